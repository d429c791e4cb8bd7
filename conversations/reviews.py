"""The review workflow's writes: scores, comments and tags, review statuses, API tokens.

Every write to Forkview's review tables (``forkview_annotations``, ``forkview_session_reviews``,
``forkview_audit_log``, ``forkview_api_tokens``) goes through this module; the pages, the JSON
API, the admin and ``seed_demo`` call it. Each function is keyword-only, validates first
(raising :class:`ReviewError` with a message meant for the user, and the offending ``field``),
then writes in one transaction with its audit entry. The rule that annotations follow their
target (a renamed branch, a duplicated or deleted session, a deleted turn) lives in
:mod:`conversations.writes`, next to the writes that change the targets, through
:func:`follow_rename`, :func:`follow_delete` and :func:`follow_copy` here.

Usage::

    target = Target(session_id="s1", branch_id="main", turn=2)
    reviews.score_set(user=user, target=target, definition=helpful, value=1)
    reviews.comment_add(user=user, target=target, body="Cites the wrong file.")
    reviews.review_status_set(user=user, session_id="s1", status=ReviewStatus.REVIEWED)
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from .models import (
    AgentSession,
    Annotation,
    AnnotationKind,
    ApiToken,
    AuditEntry,
    MessageStructure,
    ReviewStatus,
    ScoreDefinition,
    ScoreKind,
    SessionReview,
)
from .permissions import can_moderate
from .text import text_problem

__all__ = [
    "MAX_BODY_CHARS",
    "MAX_TAG_CHARS",
    "ReviewError",
    "Target",
    "annotation_delete",
    "annotation_update",
    "MAX_REASON_CHARS",
    "check_reason",
    "review_claim_next",
    "review_release",
    "check_body",
    "check_tag",
    "check_text",
    "comment_add",
    "definition_problem",
    "follow_copy",
    "follow_delete",
    "follow_rename",
    "review_next",
    "review_status_set",
    "score_set",
    "tag_add",
    "token_authenticate",
    "token_create",
    "token_revoke",
]

#: The longest comment (characters); a longer one is refused, never cut.
MAX_BODY_CHARS = 20_000
#: The longest tag.
MAX_TAG_CHARS = 64
#: The longest reason a moderator gives for deleting someone else's annotation.
MAX_REASON_CHARS = 500
#: A token: this prefix, then 40 random URL-safe characters.
TOKEN_PREFIX = "fv_"

# ---- Error messages (module constants: the tests and the API share them) ----------------

SESSION_MISSING = "Session '{session}' does not exist."
BRANCH_MISSING = "Branch '{branch}' does not exist in session '{session}'."
TURN_MISSING = "Branch '{branch}' of session '{session}' has no turn {turn}."
TURN_WITHOUT_BRANCH = "A turn belongs to a branch: give the branch too."
NOT_AUTHOR = "Only the author of an annotation can change or delete it."
UNKNOWN_DEFINITION = "There is no score definition '{name}'."
ARCHIVED_DEFINITION = "The score '{name}' is archived."
BOOLEAN_VALUE = "'{name}' is a thumbs score: the value is 1 (up) or 0 (down)."
NUMERIC_VALUE = "'{name}' takes a number from {low:g} to {high:g}."
CATEGORICAL_VALUE = "'{name}' takes one of: {labels}."
BLANK_BODY = "The comment is empty."
LONG_BODY = "The comment is longer than {limit:,} characters."
BAD_TEXT = "The text holds {problem}."
BLANK_TAG = "The tag is empty."
BAD_TAG = "A tag is one line of at most {limit} characters, without spaces at either end."
LONG_REASON = "The reason is longer than {limit} characters."
DUPLICATE_TAG = "This target already has the tag '{tag}'."
UNKNOWN_STATUS = "Unknown review status '{status}'; one of: {choices}."
UNKNOWN_ANNOTATION = "Annotation {id} does not exist."


class ReviewError(ValueError):
    """A refused review write; ``field`` names the input at fault (``None``: the whole)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class AnnotationMissing(ReviewError):
    """The annotation does not exist (the API's 404)."""


@dataclass(frozen=True)
class Target:
    """What an annotation is on: a session (``branch_id=""``), a branch (``turn=0``) or a
    user turn of a branch."""

    session_id: str
    branch_id: str = ""
    turn: int = 0

    @property
    def kind(self) -> str:
        """``"session"``, ``"branch"`` or ``"turn"``."""
        if not self.branch_id:
            return "session"
        return "branch" if self.turn == 0 else "turn"

    @classmethod
    def of(cls, annotation: Annotation) -> Target:
        return cls(annotation.session_id, annotation.branch_id, annotation.turn)


# ---- Validation --------------------------------------------------------------------------


def _check_target(target: Target, using: str) -> None:
    """Refuse a target that does not exist (a turn must exist on its branch)."""
    session_id, branch_id, turn = target.session_id, target.branch_id, target.turn
    if turn < 0:
        raise ReviewError(TURN_MISSING.format(branch=branch_id, session=session_id, turn=turn))
    if turn and not branch_id:
        raise ReviewError(TURN_WITHOUT_BRANCH, field="branch_id")
    if not AgentSession.objects.using(using).filter(pk=session_id).exists():
        raise ReviewError(SESSION_MISSING.format(session=session_id), field="session_id")
    if not branch_id:
        return
    rows = MessageStructure.objects.using(using).filter(session_id=session_id, branch_id=branch_id)
    if not turn:
        if not rows.exists():
            raise ReviewError(
                BRANCH_MISSING.format(branch=branch_id, session=session_id), field="branch_id"
            )
        return
    if not rows.filter(user_turn_number=turn).exists():
        if not rows.exists():
            raise ReviewError(
                BRANCH_MISSING.format(branch=branch_id, session=session_id), field="branch_id"
            )
        raise ReviewError(
            TURN_MISSING.format(branch=branch_id, session=session_id, turn=turn), field="turn"
        )


def check_text(text: str, field: str) -> None:
    """Refuse text Forkview never stores (``conversations.text.text_problem``)."""
    if problem := text_problem(text):
        raise ReviewError(BAD_TEXT.format(problem=problem), field=field)


def check_body(body: str, *, required: bool) -> str:
    """``body`` if it may be stored as a comment (``required``: not blank), else ReviewError."""
    if required and not body.strip():
        raise ReviewError(BLANK_BODY, field="body")
    if len(body) > MAX_BODY_CHARS:
        raise ReviewError(LONG_BODY.format(limit=MAX_BODY_CHARS), field="body")
    check_text(body, "body")
    return body


def check_tag(tag: str) -> str:
    """``tag`` if it may be stored as a tag (one line, trimmed, short), else ReviewError."""
    if not tag.strip():
        raise ReviewError(BLANK_TAG, field="label")
    if len(tag) > MAX_TAG_CHARS or tag != tag.strip() or any(c in tag for c in "\r\n\t"):
        raise ReviewError(BAD_TAG.format(limit=MAX_TAG_CHARS), field="label")
    check_text(tag, "label")
    return tag


def check_reason(reason: str) -> str:
    """``reason`` (a moderator's, optional) trimmed, if it may be stored, else ReviewError."""
    reason = reason.strip()
    if len(reason) > MAX_REASON_CHARS:
        raise ReviewError(LONG_REASON.format(limit=MAX_REASON_CHARS), field="reason")
    check_text(reason, "reason")
    return reason


def score_value(*, definition: ScoreDefinition, value: Any) -> tuple[float, str]:
    """The stored ``(value, label)`` of a score given as ``value``.

    Thumbs: ``1``/``0`` or ``True``/``False`` (or ``"up"``/``"down"``); numeric: a finite
    number in the definition's range; categorical: a label, or its index.

    Raises:
        ReviewError: ``value`` does not fit the definition (``field="value"``).
    """
    name = definition.name
    if definition.kind == ScoreKind.BOOLEAN:
        # True == 1 and False == 0: the numbers and the booleans are the same keys.
        truth: dict[object, float] = {1: 1.0, 0: 0.0, "up": 1.0, "down": 0.0, "1": 1.0, "0": 0.0}
        if isinstance(value, bool | int | float | str) and value in truth:
            return truth[value], ""
        raise ReviewError(BOOLEAN_VALUE.format(name=name), field="value")
    if definition.kind == ScoreKind.NUMERIC:
        low = definition.min_value if definition.min_value is not None else -math.inf
        high = definition.max_value if definition.max_value is not None else math.inf
        number: float | None = None
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            try:
                number = float(value)
            except (ValueError, OverflowError):  # "abc"; an int beyond a float's range
                number = None
        if number is None or not math.isfinite(number) or not low <= number <= high:
            raise ReviewError(NUMERIC_VALUE.format(name=name, low=low, high=high), field="value")
        return number, ""
    labels = [str(label) for label in definition.labels or []]
    if isinstance(value, str) and value in labels:
        return float(labels.index(value)), value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(labels):
        return float(value), labels[value]
    raise ReviewError(
        CATEGORICAL_VALUE.format(name=name, labels=", ".join(labels) or "(none)"), field="value"
    )


def definition_problem(
    *, kind: str, min_value: float | None, max_value: float | None, labels: Any
) -> tuple[str, str] | None:
    """What is wrong with a score definition, as ``(field, message)``, or ``None``."""
    if kind == ScoreKind.NUMERIC:
        if min_value is None or max_value is None:
            return "min_value", "A numeric score needs both a minimum and a maximum."
        if not (math.isfinite(min_value) and math.isfinite(max_value)) or min_value >= max_value:
            return "max_value", "The maximum must be a number above the minimum."
    if kind == ScoreKind.CATEGORICAL:
        if not isinstance(labels, list) or len(labels) < 2:
            return "labels", "A categorical score needs at least two labels."
        if not all(isinstance(label, str) and label.strip() for label in labels):
            return "labels", "Every label is a non-empty string."
        if len(set(labels)) != len(labels):
            return "labels", "The labels must differ."
    elif labels:
        return "labels", "Only a categorical score has labels."
    return None


# ---- Audit ---------------------------------------------------------------------------------


def annotation_state(annotation: Annotation) -> dict[str, Any]:
    """An annotation as the audit trail, the export and the API record it."""
    return {
        "kind": annotation.kind,
        "session_id": annotation.session_id,
        "branch_id": annotation.branch_id,
        "turn": annotation.turn,
        "definition": annotation.definition.name if annotation.definition else None,
        "value": annotation.value,
        "label": annotation.label,
        "body": annotation.body,
        "author": _username(annotation.author_id, annotation),
    }


def _username(user_id: int | None, annotation: Annotation | None = None) -> str | None:
    if user_id is None:
        return None
    if annotation is not None and "author" in annotation._state.fields_cache:
        author = annotation.author
        return author.get_username() if author is not None else None
    from django.contrib.auth import get_user_model

    user = get_user_model()._default_manager.filter(pk=user_id).first()
    return user.get_username() if user is not None else None


def _audit(
    *,
    actor: Any,
    action: str,
    kind: str,
    session_id: str,
    object_id: int | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    using: str,
) -> None:
    AuditEntry.objects.using(using).create(
        actor=actor if actor is not None and actor.pk else None,
        action=action,
        kind=kind,
        session_id=session_id,
        object_id=object_id,
        before=before,
        after=after,
    )


# ---- Annotations -------------------------------------------------------------------------


def _definition(definition: ScoreDefinition | str, using: str) -> ScoreDefinition:
    if isinstance(definition, ScoreDefinition):
        return definition
    found = ScoreDefinition.objects.using(using).filter(name=definition).first()
    if found is None:
        raise ReviewError(UNKNOWN_DEFINITION.format(name=definition), field="definition")
    return found


def score_set(
    *,
    user: Any,
    target: Target,
    definition: ScoreDefinition | str,
    value: Any,
    comment: str | None = None,
    using: str = "default",
) -> Annotation:
    """Give ``target`` a score, or change the score ``user`` already gave it.

    ``comment=None`` keeps an existing score's comment; ``""`` clears it.

    Raises:
        ReviewError: Unknown or archived definition, a value that does not fit, a target that
            does not exist, a bad comment.
    """
    found = _definition(definition, using)
    if found.archived:
        raise ReviewError(ARCHIVED_DEFINITION.format(name=found.name), field="definition")
    stored, label = score_value(definition=found, value=value)
    if comment is not None:
        check_body(comment, required=False)
    _check_target(target, using)
    with transaction.atomic(using=using):
        existing = (
            Annotation.objects.using(using)
            .select_for_update()
            .filter(
                kind=AnnotationKind.SCORE,
                definition=found,
                author=user,
                session_id=target.session_id,
                branch_id=target.branch_id,
                turn=target.turn,
            )
            .first()
        )
        if existing is None:
            annotation = Annotation(
                kind=AnnotationKind.SCORE,
                session_id=target.session_id,
                branch_id=target.branch_id,
                turn=target.turn,
                author=user,
                definition=found,
                value=stored,
                label=label,
                body=comment or "",
            )
            try:
                with transaction.atomic(using=using):
                    annotation.save(using=using)
            except IntegrityError:  # the same author scored it meanwhile: update theirs
                return score_set(
                    user=user,
                    target=target,
                    definition=found,
                    value=value,
                    comment=comment,
                    using=using,
                )
            _audit(
                actor=user,
                action="created",
                kind=AnnotationKind.SCORE,
                session_id=target.session_id,
                object_id=annotation.pk,
                before=None,
                after=annotation_state(annotation),
                using=using,
            )
            return annotation
        before = annotation_state(existing)
        existing.value, existing.label = stored, label
        if comment is not None:
            existing.body = comment
        existing.save(using=using)
        _audit(
            actor=user,
            action="updated",
            kind=AnnotationKind.SCORE,
            session_id=target.session_id,
            object_id=existing.pk,
            before=before,
            after=annotation_state(existing),
            using=using,
        )
        return existing


def comment_add(*, user: Any, target: Target, body: str, using: str = "default") -> Annotation:
    """Comment on ``target`` (markdown; rendered sanitised).

    Raises:
        ReviewError: An empty, oversized or unstorable body, or a missing target.
    """
    check_body(body, required=True)
    _check_target(target, using)
    with transaction.atomic(using=using):
        annotation = Annotation.objects.using(using).create(
            kind=AnnotationKind.COMMENT,
            session_id=target.session_id,
            branch_id=target.branch_id,
            turn=target.turn,
            author=user,
            body=body,
        )
        _audit(
            actor=user,
            action="created",
            kind=AnnotationKind.COMMENT,
            session_id=target.session_id,
            object_id=annotation.pk,
            before=None,
            after=annotation_state(annotation),
            using=using,
        )
    return annotation


def tag_add(*, user: Any, target: Target, tag: str, using: str = "default") -> Annotation:
    """Tag ``target`` (one tag of a name per target, whoever added it).

    Raises:
        ReviewError: A blank, long or unstorable tag, a tag the target has, a missing target.
    """
    check_tag(tag)
    _check_target(target, using)
    try:
        with transaction.atomic(using=using):
            annotation = Annotation.objects.using(using).create(
                kind=AnnotationKind.TAG,
                session_id=target.session_id,
                branch_id=target.branch_id,
                turn=target.turn,
                author=user,
                label=tag,
            )
            _audit(
                actor=user,
                action="created",
                kind=AnnotationKind.TAG,
                session_id=target.session_id,
                object_id=annotation.pk,
                before=None,
                after=annotation_state(annotation),
                using=using,
            )
    except IntegrityError as exc:
        raise ReviewError(DUPLICATE_TAG.format(tag=tag), field="label") from exc
    return annotation


def _locked(annotation_id: int, using: str) -> Annotation:
    annotation = (
        Annotation.objects.using(using)
        .select_for_update(of=("self",))  # not the nullable definition's outer join
        .select_related("definition")
        .filter(pk=annotation_id)
        .first()
    )
    if annotation is None:
        raise AnnotationMissing(UNKNOWN_ANNOTATION.format(id=annotation_id))
    return annotation


def _is_author(user: Any, annotation: Annotation) -> bool:
    return annotation.author_id is not None and annotation.author_id == getattr(user, "pk", None)


def _own(user: Any, annotation_id: int, using: str) -> Annotation:
    annotation = _locked(annotation_id, using)
    if not _is_author(user, annotation):
        raise ReviewError(NOT_AUTHOR)
    return annotation


def annotation_update(
    *,
    user: Any,
    annotation_id: int,
    value: Any = None,
    body: str | None = None,
    label: str | None = None,
    using: str = "default",
) -> Annotation:
    """Change one's own annotation: a score's ``value`` and comment (``body``), a comment's
    ``body``, a tag's ``label``. Arguments left ``None`` stay as they are.

    Raises:
        AnnotationMissing: No such annotation.
        ReviewError: Not the author, or the new value does not fit.
    """
    with transaction.atomic(using=using):
        annotation = _own(user, annotation_id, using)
        before = annotation_state(annotation)
        if annotation.kind == AnnotationKind.SCORE:
            if value is not None:
                assert annotation.definition is not None
                annotation.value, annotation.label = score_value(
                    definition=annotation.definition, value=value
                )
            if body is not None:
                annotation.body = check_body(body, required=False)
        elif annotation.kind == AnnotationKind.COMMENT:
            if body is not None:
                annotation.body = check_body(body, required=True)
        elif label is not None:
            annotation.label = check_tag(label)
        try:
            with transaction.atomic(using=using):
                annotation.save(using=using)
        except IntegrityError as exc:
            raise ReviewError(DUPLICATE_TAG.format(tag=label), field="label") from exc
        _audit(
            actor=user,
            action="updated",
            kind=annotation.kind,
            session_id=annotation.session_id,
            object_id=annotation.pk,
            before=before,
            after=annotation_state(annotation),
            using=using,
        )
    return annotation


def annotation_delete(
    *, user: Any, annotation_id: int, reason: str = "", using: str = "default"
) -> None:
    """Delete one's own annotation, or, as a moderator (``permissions.can_moderate``),
    someone else's.

    The audit entry names ``user`` as the actor and holds the annotation (its author included)
    as the before-state. A moderator's delete is the action ``"moderated"``, its after-state
    ``{"reason": reason}``; an author's own delete stays ``"deleted"`` (after-state ``None``,
    or the reason when one is given).

    Raises:
        AnnotationMissing: No such annotation.
        ReviewError: Neither the author nor a moderator (the author-only message), or a
            reason that is too long or unstorable (``field="reason"``).
    """
    reason = check_reason(reason)
    with transaction.atomic(using=using):
        annotation = _locked(annotation_id, using)
        own = _is_author(user, annotation)
        if not own and not can_moderate(user):
            raise ReviewError(NOT_AUTHOR)
        before = annotation_state(annotation)
        annotation.delete(using=using)
        _audit(
            actor=user,
            action="deleted" if own else "moderated",
            kind=before["kind"],
            session_id=before["session_id"],
            object_id=annotation_id,
            before=before,
            after={"reason": reason} if reason or not own else None,
            using=using,
        )


# ---- Review status and the queue ------------------------------------------------------------


_UNSET: Any = object()


def review_status_set(
    *,
    user: Any,
    session_id: str,
    status: str | None = None,
    assignee: Any = _UNSET,
    using: str = "default",
) -> SessionReview:
    """Set a session's review status and/or assignee (``assignee=None`` unassigns).

    Raises:
        ReviewError: An unknown status or a missing session.
    """
    if status is not None and status not in ReviewStatus.values:
        raise ReviewError(
            UNKNOWN_STATUS.format(status=status, choices=", ".join(ReviewStatus.values)),
            field="status",
        )
    _check_target(Target(session_id), using)
    with transaction.atomic(using=using):
        review = (
            SessionReview.objects.using(using).select_for_update().filter(pk=session_id).first()
        )
        before = None if review is None else _review_state(review)
        if review is None:
            review = SessionReview(session_id=session_id)
        if status is not None:
            review.status = status
        if assignee is not _UNSET:
            review.assignee = assignee
        review.updated_by = user if user is not None and user.pk else None
        review.save(using=using)
        _audit(
            actor=user,
            action="updated" if before else "created",
            kind="review",
            session_id=session_id,
            object_id=None,
            before=before,
            after=_review_state(review),
            using=using,
        )
    return review


def _review_state(review: SessionReview) -> dict[str, Any]:
    return {"status": review.status, "assignee": _username(review.assignee_id)}


def _queue(user: Any, after: str | None, using: str) -> Any:
    """``user``'s queue (a query of session ids): sessions assigned to them or to nobody, not
    reviewed, oldest first (by creation, then id); ``after`` skips sessions up to that one."""
    sessions = AgentSession.objects.using(using).order_by("created_at", "session_id")
    done = SessionReview.objects.using(using).filter(
        Q(status=ReviewStatus.REVIEWED) | (Q(assignee__isnull=False) & ~Q(assignee=user))
    )
    queue = sessions.exclude(session_id__in=done.values("session_id"))
    if after is not None:
        current = AgentSession.objects.using(using).filter(pk=after).first()
        if current is not None and current.created_at is not None:
            queue = queue.filter(
                Q(created_at__gt=current.created_at)
                | Q(created_at=current.created_at, session_id__gt=after)
            )
    return queue


def review_next(*, user: Any, after: str | None = None, using: str = "default") -> str | None:
    """The next session of ``user``'s queue: assigned to them or to nobody, not reviewed,
    oldest first (by creation, then id); ``after`` skips sessions up to that one. Reads only
    (:func:`review_claim_next` is the queue's "open": it claims).

    Two index walks at most: the sessions with a review row are few next to those without.
    """
    found = _queue(user, after, using).values_list("session_id", flat=True).first()
    return None if found is None else str(found)


#: How many sessions a claim tries before it gives up (each try lost a race to another claim).
CLAIM_ATTEMPTS = 50


def review_claim_next(*, user: Any, after: str | None = None, using: str = "default") -> str | None:
    """Open the next session of ``user``'s queue (as :func:`review_next`), claiming it: an
    unassigned session is assigned to ``user`` (audited, action ``"claimed"``), in one
    transaction, so two reviewers opening the queue at once get two different sessions.

    PostgreSQL: the candidate session row is locked ``FOR NO KEY UPDATE SKIP LOCKED`` (a
    session another claim holds is passed over; the SDK's writes of its messages are not
    blocked), then its review row ``FOR UPDATE`` is checked again (a claim that committed
    after this statement's snapshot). SQLite: the transaction begins ``IMMEDIATE`` (Forkview's
    connections), so claims are serialised by the write lock. A session assigned to someone
    (by a person or a claim) is never re-assigned; one assigned to ``user`` is opened as is.

    Returns:
        The session id, or ``None`` when the queue is empty.
    """
    from django.db import connections

    locking = connections[using].vendor == "postgresql"
    for _attempt in range(CLAIM_ATTEMPTS):
        with transaction.atomic(using=using):
            queue = _queue(user, after, using)
            if locking:
                queue = queue.select_for_update(skip_locked=True, no_key=True)
            session_id = queue.values_list("session_id", flat=True).first()
            if session_id is None:
                return None
            review = (
                SessionReview.objects.using(using).select_for_update().filter(pk=session_id).first()
            )
            if review is not None and (
                review.status == ReviewStatus.REVIEWED or review.assignee_id not in (None, user.pk)
            ):
                continue  # claimed or reviewed since this statement's snapshot: the next one
            if review is not None and review.assignee_id == user.pk:
                return str(session_id)
            before = None if review is None else _review_state(review)
            if review is None:
                review = SessionReview(session_id=session_id)
            review.assignee = user
            review.updated_by = user
            try:
                with transaction.atomic(using=using):
                    review.save(using=using)
            except IntegrityError:  # a review row was inserted meanwhile: look again
                continue
            _audit(
                actor=user,
                action="claimed",
                kind="review",
                session_id=session_id,
                object_id=None,
                before=before,
                after=_review_state(review),
                using=using,
            )
            return str(session_id)
    return review_next(user=user, after=after, using=using)


#: How many of a session's latest review entries :func:`review_release` looks through.
RELEASE_LOOKBACK = 50


def review_release(*, user: Any, session_id: str, using: str = "default") -> bool:
    """Undo ``user``'s queue claim on ``session_id`` (they skipped it): only if the session's
    latest change of assignee is that claim (so it was unassigned before, and no one assigned
    it since). The session goes back to how the claim found it: unassigned, and without a
    review row if the claim created it and its status is still "unreviewed". Audited
    (action ``"released"``). Returns whether it released.
    """
    with transaction.atomic(using=using):
        review = (
            SessionReview.objects.using(using).select_for_update().filter(pk=session_id).first()
        )
        if review is None or review.assignee_id is None or review.assignee_id != user.pk:
            return False
        entries = AuditEntry.objects.using(using).filter(session_id=session_id, kind="review")
        claim = None
        for entry in entries.order_by("-at", "-id")[:RELEASE_LOOKBACK]:
            if (entry.before or {}).get("assignee") != (entry.after or {}).get("assignee"):
                claim = entry
                break
        if claim is None or claim.action != "claimed" or claim.actor_id != user.pk:
            return False
        before = _review_state(review)
        if claim.before is None and review.status == ReviewStatus.UNREVIEWED:
            review.delete(using=using)
            after = None
        else:
            review.assignee = None
            review.updated_by = user
            review.save(using=using)
            after = _review_state(review)
        _audit(
            actor=user,
            action="released",
            kind="review",
            session_id=session_id,
            object_id=None,
            before=before,
            after=after,
            using=using,
        )
    return True


# ---- Following the target (called by conversations.writes only) ----------------------------


def _follow_audit(
    *, action: str, session_id: str, before: Any, after: Any, count: int, using: str
) -> None:
    """One audit entry per operation that moved, copied or deleted annotations (no actor: the
    staff edit or session call that caused it is in its own log)."""
    if count:
        _audit(
            actor=None,
            action=action,
            kind="annotations",
            session_id=session_id,
            object_id=None,
            before=before,
            after=after,
            using=using,
        )


def follow_rename(*, session_id: str, old: str, new: str, using: str) -> None:
    """A branch was renamed: its annotations move with it."""
    n = (
        Annotation.objects.using(using)
        .filter(session_id=session_id, branch_id=old)
        .update(branch_id=new)
    )
    _follow_audit(
        action="moved",
        session_id=session_id,
        before={"branch_id": old, "count": n},
        after={"branch_id": new, "count": n},
        count=n,
        using=using,
    )


def follow_delete(
    *, session_id: str, branch_id: str | None = None, turn: int | None = None, using: str
) -> None:
    """A session (``branch_id=None``), a branch (``turn=None``) or a turn was deleted: so are
    its annotations (a session's review status goes with the session)."""
    rows = Annotation.objects.using(using).filter(session_id=session_id)
    if branch_id is None:
        SessionReview.objects.using(using).filter(pk=session_id).delete()
    else:
        rows = rows.filter(branch_id=branch_id)
        if turn is not None:
            rows = rows.filter(turn=turn)
    n = rows.delete()[1].get(Annotation._meta.label, 0)
    _follow_audit(
        action="deleted",
        session_id=session_id,
        before={"branch_id": branch_id, "turn": turn, "count": n},
        after=None,
        count=n,
        using=using,
    )


def follow_copy(*, session_id: str, new_session_id: str, using: str) -> int:
    """A session was duplicated: its annotations are copied to the copy (same authors and
    times; the copy's review status starts over). Returns how many."""
    sources = list(Annotation.objects.using(using).filter(session_id=session_id).order_by("id"))
    copies = Annotation.objects.using(using).bulk_create(
        [
            Annotation(
                kind=a.kind,
                session_id=new_session_id,
                branch_id=a.branch_id,
                turn=a.turn,
                author_id=a.author_id,
                definition_id=a.definition_id,
                value=a.value,
                label=a.label,
                body=a.body,
            )
            for a in sources
        ]
    )
    for source, copy in zip(sources, copies, strict=True):  # bulk_create stamps "now"
        copy.created_at, copy.updated_at = source.created_at, source.updated_at
    # Both vendors return the new ids from a bulk insert (SQLite >= 3.35, PostgreSQL).
    Annotation.objects.using(using).bulk_update(copies, ["created_at", "updated_at"])
    _follow_audit(
        action="copied",
        session_id=new_session_id,
        before={"session_id": session_id, "count": len(copies)},
        after={"session_id": new_session_id, "count": len(copies)},
        count=len(copies),
        using=using,
    )
    return len(copies)


# ---- API tokens ----------------------------------------------------------------------------


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def token_create(*, user: Any, name: str, using: str = "default") -> tuple[ApiToken, str]:
    """A new token for ``user``: ``(the row, the token)``; the token is never stored."""
    name = name.strip()
    if not name:
        raise ReviewError("Give the token a name (what uses it).", field="name")
    if len(name) > 100:
        raise ReviewError("A token's name is at most 100 characters.", field="name")
    check_text(name, "name")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(30)
    token = ApiToken.objects.using(using).create(
        user=user, name=name, prefix=raw[:10], digest=_digest(raw)
    )
    return token, raw


def token_revoke(*, token: ApiToken, using: str = "default") -> None:
    """Revoke ``token`` (it stays listed, marked revoked)."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(using=using, update_fields=["revoked_at"])


def token_authenticate(*, raw: str, using: str = "default") -> Any:
    """The active user a bearer token belongs to, or ``None`` (unknown, revoked, or the user
    is inactive). Records when the token was last used (at most once a minute)."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    token = (
        ApiToken.objects.using(using)
        .select_related("user")
        .filter(digest=_digest(raw), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.using(using).filter(pk=token.pk).update(last_used_at=now)
    return token.user


def authors_of(annotations: Iterable[Annotation]) -> set[int]:
    """The author ids of ``annotations`` (for one query of their names)."""
    return {a.author_id for a in annotations if a.author_id is not None}
