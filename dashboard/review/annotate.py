"""The session page's review writes (scores, comments, tags, review status) and the queue.

JSON in, JSON out: every write is a POST with a JSON object body and the CSRF token (the
page's ``annotate.js`` sends ``X-CSRFToken``), made by an annotator
(``conversations.permissions.annotator_required``: anonymous -> the login page, without the
permission -> 403). Writes go through ``conversations.reviews``; a refused write
(``ReviewError``) is a 400 ``{"error": message, "field": field}``, an annotation by someone
else a 403, an unknown one a 404. A successful write answers with the annotation and the
re-rendered pieces of the page it changes (the target's score bar, the session summary, the
branch's figures), so the page updates without a reload and with one renderer.

The queue: ``/review/`` (a GET: it writes nothing) is a start page whose form POSTs to
``/review/next/``; that opens the oldest session that is assigned to me or to nobody and not
reviewed, and claims it (``reviews.review_claim_next``: an unassigned session is assigned to
me, atomically, so two reviewers get two different sessions; an assignee someone set is kept).
``/review/next/`` with ``after`` (and maybe the ``status`` to give the session being left) moves
on; a skip (no status) releases a session I had claimed from the queue
(``reviews.review_release``). The session becomes "in review" when its reviewer first scores,
comments or tags it while it is unreviewed, or when they set the status.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from conversations import reviews
from conversations.items import display_text, display_value
from conversations.models import Annotation, AnnotationKind, ReviewStatus, SessionReview
from conversations.permissions import (
    annotator_required,
    can_annotate,
    can_moderate,
    reviewer_required,
)
from conversations.reviews import ReviewError, Target

from .selectors.annotations import SessionAnnotations, session_annotations_get

__all__ = [
    "annotation_delete",
    "annotation_edit",
    "annotations_get",
    "comment_add",
    "queue_next",
    "queue_start",
    "queue_url",
    "review_set",
    "score_clear",
    "score_set",
    "tag_add",
]

#: Most turns one ``annotations_get`` answers for (a "load earlier" fragment's worth).
MAX_BARS = 200

BAD_BODY = "Send a JSON object."
BAD_TURN = "The turn is a whole number (0 for the branch itself)."
BAD_BRANCH = "The branch is a string ('' for the session itself)."
BAD_FIELD = "'{field}' must be {what}."
FORBIDDEN = reviews.NOT_AUTHOR
NO_ANNOTATION = "Annotation {id} does not exist in this session."
UNKNOWN_USER = "There is no active user '{name}'."
NO_SCORE = "You have not given '{name}' to this target."


def queue_url(session_id: str) -> str:
    """A session page opened from the queue."""
    return reverse("session_detail", kwargs={"session_id": session_id}) + "?queue=1"


def _error(message: str, field: str | None = None, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": message, "field": field}, status=status)


class _Refused(Exception):
    def __init__(self, response: JsonResponse) -> None:
        self.response = response


def _json_write(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """Parse the JSON body; ``ReviewError`` -> 400 (404 for a missing annotation)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, session_id: str, **kwargs: Any) -> JsonResponse:
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return _error(BAD_BODY)
        if not isinstance(data, dict):
            return _error(BAD_BODY)
        try:
            return view(request, session_id, data, **kwargs)
        except reviews.AnnotationMissing as exc:
            return _error(str(exc), exc.field, status=404)
        except ReviewError as exc:  # an unknown session is a 404, other refusals a 400
            return _error(str(exc), exc.field, status=404 if exc.field == "session_id" else 400)
        except _Refused as refused:
            return refused.response

    return wrapper


def _text(data: dict[str, Any], field: str, *, required: bool = True) -> str | None:
    value = data.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ReviewError(BAD_FIELD.format(field=field, what="a string"), field=field)
    return value


def _target(session_id: str, data: dict[str, Any]) -> Target:
    branch = data.get("branch_id", "")
    turn = data.get("turn", 0)
    if not isinstance(branch, str):
        raise ReviewError(BAD_BRANCH, field="branch_id")
    if isinstance(turn, bool) or not isinstance(turn, int) or turn < 0:
        raise ReviewError(BAD_TURN, field="turn")
    return Target(session_id, branch, turn)


def _session_exists(session_id: str) -> None:
    from conversations.models import AgentSession

    if not AgentSession.objects.filter(pk=session_id).exists():
        raise _Refused(
            _error(reviews.SESSION_MISSING.format(session=session_id), "session_id", 404)
        )


def _start_review(request: HttpRequest, session_id: str) -> None:
    """An unreviewed session becomes "in review" with its first annotation."""
    status = SessionReview.objects.filter(pk=session_id).values_list("status", flat=True).first()
    if status in (None, ReviewStatus.UNREVIEWED):
        reviews.review_status_set(
            user=request.user, session_id=session_id, status=ReviewStatus.IN_REVIEW
        )


def _own(request: HttpRequest, session_id: str, annotation_id: int) -> Annotation:
    """The viewer's annotation ``annotation_id`` of this session (404 / 403 otherwise)."""
    annotation = Annotation.objects.filter(pk=annotation_id, session_id=session_id).first()
    if annotation is None:
        raise _Refused(_error(NO_ANNOTATION.format(id=annotation_id), None, 404))
    if annotation.author_id is None or annotation.author_id != request.user.pk:
        raise _Refused(_error(FORBIDDEN, None, 403))
    return annotation


def _html(request: HttpRequest, template: str, context: dict[str, Any]) -> str:
    return display_text(render_to_string(template, context, request))


def _pieces(
    request: HttpRequest, ann: SessionAnnotations, branch_id: str, turn: int
) -> dict[str, Any]:
    """The re-rendered parts of the page a write on (branch_id, turn) changes."""
    notes = ann.target(branch_id, turn)
    context = {"ann": ann, "notes": notes, "session_id": ann.session_id}
    pieces: dict[str, Any] = {
        "bar": _html(request, "dashboard/partials/_note_bar.html", context),
        "summary": _html(request, "dashboard/partials/_review_summary.html", context),
    }
    if branch_id:
        pieces["branch"] = {
            "id": branch_id,
            "html": _html(
                request,
                "dashboard/partials/_branch_scores.html",
                {"scores": ann.branch(branch_id), "branch_id": branch_id},
            ),
        }
    return pieces


def _answer(
    request: HttpRequest,
    session_id: str,
    target: Target,
    annotation: Annotation | None = None,
    status: int = 200,
) -> JsonResponse:
    ann = session_annotations_get(session_id=session_id, user=request.user, with_assignees=True)
    note = None
    if annotation is not None:
        found = ann.target(target.branch_id, target.turn)
        note = next(
            (n for n in (*found.scores, *found.comments, *found.tags) if n.id == annotation.pk),
            None,
        )
    payload = {
        "ok": True,
        "annotation": note.as_json() if note else None,
        "target": {"branch_id": target.branch_id, "turn": target.turn, "kind": target.kind},
        "review": {"status": ann.review.status, "assignee": ann.review.assignee},
        "html": _pieces(request, ann, target.branch_id, target.turn),
    }
    return JsonResponse(
        display_value(payload), status=status, json_dumps_params={"ensure_ascii": False}
    )


# ---- Annotations -----------------------------------------------------------------------------


@require_POST
@annotator_required
@_json_write
def score_set(request: HttpRequest, session_id: str, data: dict[str, Any]) -> JsonResponse:
    """``{"branch_id", "turn", "definition": name, "value", "comment"?}``: give (or change)
    my score."""
    target = _target(session_id, data)
    definition = _text(data, "definition")
    assert definition is not None
    if "value" not in data or data["value"] is None:
        raise ReviewError("Give a value (use the clear route to remove a score).", field="value")
    comment = _text(data, "comment", required=False)
    annotation = reviews.score_set(
        user=request.user,
        target=target,
        definition=definition,
        value=data["value"],
        comment=comment,
    )
    _start_review(request, session_id)
    return _answer(request, session_id, target, annotation)


@require_POST
@annotator_required
@_json_write
def score_clear(request: HttpRequest, session_id: str, data: dict[str, Any]) -> JsonResponse:
    """``{"branch_id", "turn", "definition": name}``: remove my score."""
    target = _target(session_id, data)
    definition = _text(data, "definition")
    mine = (
        Annotation.objects.filter(
            kind=AnnotationKind.SCORE,
            session_id=session_id,
            branch_id=target.branch_id,
            turn=target.turn,
            definition__name=definition,
            author_id=request.user.pk,
        )
        .values_list("pk", flat=True)
        .first()
    )
    if mine is None:
        _session_exists(session_id)
        raise ReviewError(NO_SCORE.format(name=definition), field="definition")
    reviews.annotation_delete(user=request.user, annotation_id=mine)
    return _answer(request, session_id, target)


@require_POST
@annotator_required
@_json_write
def comment_add(request: HttpRequest, session_id: str, data: dict[str, Any]) -> JsonResponse:
    """``{"branch_id", "turn", "body"}``: a markdown comment."""
    target = _target(session_id, data)
    body = _text(data, "body")
    assert body is not None
    annotation = reviews.comment_add(user=request.user, target=target, body=body)
    _start_review(request, session_id)
    return _answer(request, session_id, target, annotation, status=201)


@require_POST
@annotator_required
@_json_write
def tag_add(request: HttpRequest, session_id: str, data: dict[str, Any]) -> JsonResponse:
    """``{"branch_id", "turn", "label"}``: a tag (one of a name per target)."""
    target = _target(session_id, data)
    label = _text(data, "label")
    assert label is not None
    annotation = reviews.tag_add(user=request.user, target=target, tag=label)
    _start_review(request, session_id)
    return _answer(request, session_id, target, annotation, status=201)


@require_POST
@annotator_required
@_json_write
def annotation_edit(
    request: HttpRequest, session_id: str, data: dict[str, Any], annotation_id: int
) -> JsonResponse:
    """``{"body"?, "value"?, "label"?}``: change my annotation (403 for someone else's)."""
    own = _own(request, session_id, annotation_id)
    body = _text(data, "body", required=False)
    label = _text(data, "label", required=False)
    if body is None and label is None and data.get("value") is None:
        raise ReviewError("Nothing to change: send body, value or label.", field=None)
    annotation = reviews.annotation_update(
        user=request.user, annotation_id=own.pk, value=data.get("value"), body=body, label=label
    )
    return _answer(request, session_id, Target.of(annotation), annotation)


def _deleter_required(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """Anonymous -> the login page; neither an annotator nor a moderator -> 403 (as
    ``annotator_required``); which of the two the delete needs is checked per annotation."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        if not (can_annotate(request.user) or can_moderate(request.user)):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return login_required(wrapper)


@require_POST
@_deleter_required
@_json_write
def annotation_delete(
    request: HttpRequest, session_id: str, data: dict[str, Any], annotation_id: int
) -> JsonResponse:
    """Delete my annotation (a comment, a tag, a score; with the annotate permission), or, as a
    moderator (``permissions.can_moderate``), someone else's: ``{"reason"?}`` (optional, kept
    in the audit trail). Anyone else: 403, as before."""
    annotation = Annotation.objects.filter(pk=annotation_id, session_id=session_id).first()
    if annotation is None:
        raise _Refused(_error(NO_ANNOTATION.format(id=annotation_id), None, 404))
    mine = annotation.author_id is not None and annotation.author_id == request.user.pk
    if not (can_annotate(request.user) if mine else can_moderate(request.user)):
        raise _Refused(_error(FORBIDDEN, None, 403))
    reason = _text(data, "reason", required=False) or ""
    target = Target.of(annotation)
    reviews.annotation_delete(user=request.user, annotation_id=annotation.pk, reason=reason)
    return _answer(request, session_id, target)


@require_POST
@annotator_required
@_json_write
def review_set(request: HttpRequest, session_id: str, data: dict[str, Any]) -> JsonResponse:
    """``{"status"?, "assignee"?}``: the session's review status and assignee (a username;
    ``""`` or ``null`` unassigns, ``"me"`` assigns me)."""
    status = _text(data, "status", required=False)
    kwargs: dict[str, Any] = {}
    if "assignee" in data:
        name = data["assignee"]
        if name is not None and not isinstance(name, str):
            raise ReviewError(
                BAD_FIELD.format(field="assignee", what="a username"), field="assignee"
            )
        if not name:
            kwargs["assignee"] = None
        elif name == "me":
            kwargs["assignee"] = request.user
        else:
            users = get_user_model()._default_manager
            found = users.filter(**{users.model.USERNAME_FIELD: name}, is_active=True).first()
            if found is None:
                raise ReviewError(UNKNOWN_USER.format(name=name), field="assignee")
            kwargs["assignee"] = found
    if status is None and not kwargs:
        raise ReviewError("Nothing to change: send status or assignee.", field=None)
    reviews.review_status_set(user=request.user, session_id=session_id, status=status, **kwargs)
    return _answer(request, session_id, Target(session_id))


@require_GET
@reviewer_required
def annotations_get(request: HttpRequest, session_id: str) -> JsonResponse:
    """The score bars of turns ``?branch=b&turns=1,2,3`` (turns a "load earlier" fragment
    added) and every annotation of the branch: ``{"bars": {turn: html}, "annotations": [...]}``.
    """
    branch_id = request.GET.get("branch", "")
    turns: list[int] = []
    for part in request.GET.get("turns", "").split(",")[:MAX_BARS]:
        if part.strip().isdigit():
            turns.append(int(part))
    try:
        _session_exists(session_id)
    except _Refused as refused:
        return refused.response
    ann = session_annotations_get(session_id=session_id, user=request.user, branches=[branch_id])
    bars = {
        str(turn): _html(
            request,
            "dashboard/partials/_note_bar.html",
            {"ann": ann, "notes": ann.target(branch_id, turn), "session_id": session_id},
        )
        for turn in turns
    }
    notes = [
        target.as_json() for (bid, _), target in sorted(ann.targets.items()) if bid == branch_id
    ]
    payload = {"bars": bars, "targets": notes, "definitions": ann.definitions_json()}
    return JsonResponse(display_value(payload), json_dumps_params={"ensure_ascii": False})


# ---- The queue -------------------------------------------------------------------------------


def _queue_page(request: HttpRequest, *, ended: bool) -> HttpResponse:
    remaining = reviews.review_next(user=request.user) is not None
    context = {"ended": ended, "remaining": remaining, "start": False}
    return HttpResponse(
        display_text(render_to_string("dashboard/review_queue.html", context, request))
    )


@require_GET
@annotator_required
def queue_start(request: HttpRequest) -> HttpResponse:
    """The queue's start page: a form that opens (claims) the oldest session of my queue
    (``queue_next`` without ``after``; the page's script submits it at once, Enter does without
    scripts). A GET writes nothing. ``?end=1`` (or an empty queue): the "end of the queue" page.
    """
    if request.GET.get("end") == "1":
        return _queue_page(request, ended=True)
    if reviews.review_next(user=request.user) is None:
        return _queue_page(request, ended=False)
    return HttpResponse(
        display_text(render_to_string("dashboard/review_queue.html", {"start": True}, request))
    )


@require_POST
@annotator_required
def queue_next(request: HttpRequest) -> HttpResponse:
    """Leave session ``after`` (setting its ``status`` first, if given) for the next one, which
    is claimed (``reviews.review_claim_next``: assigned to me if it was unassigned). Skipping
    (no ``status``) a session I had claimed from the queue releases it
    (``reviews.review_release``)."""
    after = request.POST.get("after", "")
    status = request.POST.get("status", "")
    if status:
        try:
            reviews.review_status_set(user=request.user, session_id=after, status=status)
        except ReviewError as exc:
            code = 404 if exc.field == "session_id" else 400
            return HttpResponse(str(exc), status=code, content_type="text/plain; charset=utf-8")
    elif after:
        reviews.review_release(user=request.user, session_id=after)
    session_id = reviews.review_claim_next(user=request.user, after=after or None)
    if session_id is None:
        return HttpResponseRedirect(reverse("review_queue") + "?end=1", status=303)
    return HttpResponseRedirect(queue_url(session_id), status=303)
