"""Annotations (scores, comments, tags) of a session, and the score definitions.

Reads: everyone who may view. Writes: the annotate permission; changing an annotation: only
its author; deleting it: its author or a moderator (``permissions.can_moderate``; audited with
the moderator as actor and an optional ``reason``); ``conversations.reviews`` decides (403).
Every write goes through ``conversations.reviews`` (validation, the audit trail); its refusals
are 400 with the field.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Router, Status
from ninja.errors import AuthorizationError
from ninja.params.functions import Path, Query

from conversations import reviews
from conversations.models import AgentSession, Annotation, ScoreDefinition
from conversations.permissions import can_annotate, can_moderate
from conversations.reviews import AnnotationMissing, ReviewError, Target

from .auth import CANNOT_ANNOTATE, require_annotator
from .errors import NO_SESSION, ApiError, checked_text
from .schemas import (
    MAX_NUMBER,
    AnnotationIn,
    AnnotationOut,
    AnnotationPage,
    AnnotationPatch,
    Error,
    ScoreDefinitionOut,
    ValidationErrors,
)

__all__ = ["ANNOTATIONS_PER_PAGE", "router"]

router = Router(tags=["annotations"])

ANNOTATIONS_PER_PAGE = 100
MAX_ANNOTATIONS_PER_PAGE = 500
#: The largest annotation id asked for (a bigint column).
MAX_ID = 2**63 - 1

_ERRORS: dict[int, Any] = {401: Error, 403: Error, 404: Error, 422: ValidationErrors}


def annotation_out(annotation: Annotation) -> dict[str, Any]:
    """An annotation as the API shows it (its author and definition already joined)."""
    return {
        "id": annotation.pk,
        "kind": annotation.kind,
        "target": Target.of(annotation).kind,
        "session_id": annotation.session_id,
        "branch_id": annotation.branch_id,
        "turn": annotation.turn,
        "author": annotation.author.get_username() if annotation.author else None,
        "definition": annotation.definition.name if annotation.definition else None,
        "value": annotation.value,
        "label": annotation.label,
        "body": annotation.body,
        "created_at": annotation.created_at,
        "updated_at": annotation.updated_at,
    }


def _refused(exc: ReviewError) -> ApiError:
    """A ``conversations.reviews`` refusal as an answer: 404 (no such annotation or session in
    the path), 403 (not the author), else 400 naming the field."""
    if isinstance(exc, AnnotationMissing):
        return ApiError(404, str(exc), field="annotation_id")
    if str(exc) == reviews.NOT_AUTHOR:
        return ApiError(403, str(exc))
    if exc.field == "session_id":
        return ApiError(404, str(exc), field="session_id")
    return ApiError(400, str(exc), field=exc.field)


def require_deleter(request: HttpRequest) -> Any:
    """The calling user if they may delete annotations: their own (an annotator) or anyone's
    (a moderator); else the 403 of ``require_annotator``."""
    user = getattr(request, "auth", None)
    if not (can_annotate(user) or can_moderate(user)):
        raise AuthorizationError(403, CANNOT_ANNOTATE)
    return user


def _fetched(annotation_id: int) -> Annotation:
    return Annotation.objects.select_related("author", "definition").get(pk=annotation_id)


@router.get(
    "/score-definitions/",
    response={200: list[ScoreDefinitionOut], **_ERRORS},
    summary="The score definitions",
    operation_id="score_definitions_list",
)
def score_definitions_list(
    request: HttpRequest, archived: bool = Query(False, description="Include archived ones.")
) -> list[dict[str, Any]]:
    """What reviewers score with (staff edit them in the admin), in score-bar order."""
    rows = ScoreDefinition.objects.all()
    if not archived:
        rows = rows.filter(archived=False)
    return [
        {
            "name": d.name,
            "kind": d.kind,
            "min_value": d.min_value,
            "max_value": d.max_value,
            "labels": [str(label) for label in d.labels or []],
            "description": d.description,
            "position": d.position,
            "archived": d.archived,
        }
        for d in rows
    ]


SessionId = Path(..., description="The session id, one percent-encoded path segment.")


@router.get(
    "/sessions/{session_id}/annotations/",
    response={200: AnnotationPage, **_ERRORS},
    summary="A session's annotations",
    operation_id="annotations_list",
)
def annotations_list(
    request: HttpRequest,
    session_id: str = SessionId,
    kind: str | None = Query(None, pattern="^(score|comment|tag)$"),
    branch: str | None = Query(
        None, max_length=1000, description="Only this branch's (\"\" : the session's own)."
    ),
    turn: int | None = Query(None, ge=0, le=MAX_NUMBER, description="Only this turn."),
    page: int = Query(1, ge=1, le=MAX_NUMBER, description="Clamped to the last page."),
    per_page: int = Query(ANNOTATIONS_PER_PAGE, ge=1, le=MAX_ANNOTATIONS_PER_PAGE),
) -> dict[str, Any]:
    """Every annotation of the session (on itself, its branches and their turns), oldest
    first, with its author and score definition."""
    if not AgentSession.objects.filter(pk=session_id).exists():
        raise ApiError(404, NO_SESSION, field="session_id")
    rows = Annotation.objects.filter(session_id=session_id)
    if kind is not None:
        rows = rows.filter(kind=kind)
    if branch is not None:
        rows = rows.filter(branch_id=checked_text(branch, "branch"))
    if turn is not None:
        rows = rows.filter(turn=turn)
    total = rows.count()
    num_pages = max(1, -(-total // per_page))
    number = min(page, num_pages)
    start = (number - 1) * per_page
    page_rows = rows.select_related("author", "definition").order_by("created_at", "id")
    return {
        "items": [annotation_out(a) for a in page_rows[start : start + per_page]],
        "page": number,
        "num_pages": num_pages,
        "total": total,
    }


@router.post(
    "/sessions/{session_id}/annotations/",
    response={201: AnnotationOut, 400: Error, **_ERRORS},
    summary="Score, comment on or tag the session, a branch or a turn",
    operation_id="annotations_create",
)
def annotations_create(
    request: HttpRequest, payload: AnnotationIn, session_id: str = SessionId
) -> Status[dict[str, Any]]:
    """Needs the annotate permission. Scoring a target you scored already changes your score
    (the answer is still 201, with the same id)."""
    user = require_annotator(request)
    target = Target(session_id, checked_text(payload.branch_id, "branch_id"), payload.turn)
    try:
        if payload.kind == "score":
            if payload.definition is None:
                raise ApiError(400, "A score needs a 'definition'.", field="definition")
            if payload.value is None:
                raise ApiError(400, "A score needs a 'value'.", field="value")
            annotation = reviews.score_set(
                user=user,
                target=target,
                definition=checked_text(payload.definition, "definition"),
                value=payload.value,
                comment=payload.comment,
            )
        elif payload.kind == "comment":
            annotation = reviews.comment_add(user=user, target=target, body=payload.body or "")
        else:
            annotation = reviews.tag_add(user=user, target=target, tag=payload.label or "")
    except ReviewError as exc:
        raise _refused(exc) from exc
    return Status(201, annotation_out(_fetched(annotation.pk)))


AnnotationId = Path(..., ge=1, le=MAX_ID, description="The annotation's id.")


@router.patch(
    "/annotations/{annotation_id}/",
    response={200: AnnotationOut, 400: Error, **_ERRORS},
    summary="Change your annotation",
    operation_id="annotation_update",
)
def annotation_update(
    request: HttpRequest, payload: AnnotationPatch, annotation_id: int = AnnotationId
) -> dict[str, Any]:
    """Only its author may (403 otherwise), with the annotate permission."""
    user = require_annotator(request)
    try:
        reviews.annotation_update(
            user=user,
            annotation_id=annotation_id,
            value=payload.value,
            body=payload.body,
            label=payload.label,
        )
    except ReviewError as exc:
        raise _refused(exc) from exc
    return annotation_out(_fetched(annotation_id))


@router.delete(
    "/annotations/{annotation_id}/",
    response={204: None, 400: Error, **_ERRORS},
    summary="Delete your annotation (or, as a moderator, anyone's)",
    operation_id="annotation_delete",
)
def annotation_delete(
    request: HttpRequest,
    annotation_id: int = AnnotationId,
    reason: str = Query(
        "",
        max_length=reviews.MAX_REASON_CHARS,
        description="Why a moderator deletes someone else's annotation (optional; audited).",
    ),
) -> HttpResponse:
    """Its author may (with the annotate permission), and so may a moderator (the
    ``conversations.delete_annotation`` permission, with view): the audit trail records the
    moderator and the ``reason``. Anyone else: 403."""
    user = require_deleter(request)
    try:
        reviews.annotation_delete(user=user, annotation_id=annotation_id, reason=reason)
    except ReviewError as exc:
        raise _refused(exc) from exc
    return HttpResponse(status=204)
