"""Reads of sessions: the list, one session's tree, a branch's turns, the usage charts' data,
and the session's review status (read and set).

Each endpoint runs a fixed number of queries whatever the session's size (the selectors'
own counts, plus authentication). Ids arrive decoded (:mod:`.paths`).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponseBase
from ninja import Router
from ninja.params.functions import Path, Query

from conversations.exchange import CONTENT_TYPES, export_chunks
from conversations.models import MAIN_BRANCH, AgentSession, SessionReview
from conversations.reviews import ReviewError, review_status_set
from conversations.views import spool, spooled_response
from dashboard.review import selectors

from .auth import require_annotator
from .errors import NO_BRANCH, NO_SESSION, ApiError, checked_text
from .schemas import (
    MAX_NUMBER,
    Error,
    ReviewIn,
    ReviewOut,
    SessionPage,
    TurnPage,
    UsageOut,
    ValidationErrors,
    cost_total_out,
)

__all__ = ["TURNS_PER_PAGE", "router"]

router = Router(tags=["sessions"])

#: Turns per page of the turns endpoint (``per_page`` up to :data:`MAX_TURNS_PER_PAGE`).
TURNS_PER_PAGE = 20
MAX_TURNS_PER_PAGE = 100
MAX_SESSIONS_PER_PAGE = 100
_SORT_PATTERN = "^-?(" + "|".join(selectors.SORTS) + ")$"

_ERRORS: dict[int, Any] = {401: Error, 403: Error, 404: Error, 422: ValidationErrors}

SessionId = Path(..., description="The session id, one percent-encoded path segment.")
BranchId = Path(..., description="The branch id, one percent-encoded path segment.")


def _pages(total: int, per_page: int, page: int) -> tuple[int, int]:
    """(the page, clamped into range; the number of pages)."""
    num_pages = max(1, -(-total // per_page))
    return min(max(1, page), num_pages), num_pages


def _not_found(exc: selectors.ReviewError) -> ApiError:
    if isinstance(exc, selectors.BranchNotFound):
        return ApiError(404, NO_BRANCH, field="branch_id")
    return ApiError(404, NO_SESSION, field="session_id")


@router.get(
    "/sessions/",
    response={200: SessionPage, **_ERRORS},
    summary="The session list",
    operation_id="sessions_list",
)
def sessions_list(
    request: HttpRequest,
    sort: str = Query(
        selectors.DEFAULT_SORT,
        pattern=_SORT_PATTERN,
        description="A column (title, turns, branches, tokens, cost, updated, created), "
        "'-' first for descending.",
    ),
    page: int = Query(1, ge=1, le=MAX_NUMBER, description="Clamped to the last page."),
    per_page: int = Query(selectors.SESSIONS_PER_PAGE, ge=1, le=MAX_SESSIONS_PER_PAGE),
    branched: bool = Query(False, description="Only sessions with more than one branch."),
    tool: str = Query("", max_length=200, description="Only sessions that used this tool."),
    updated_from: date | None = Query(None, alias="from", description="Last activity from."),
    updated_to: date | None = Query(None, alias="to", description="Last activity up to."),
) -> dict[str, Any]:
    """The sessions, as the home page lists them (its filters and sorts; any other filter of
    the list page is honoured too, by its query parameter)."""
    params = {key: checked_text(request.GET.get(key, ""), key) for key in request.GET}
    params["branched"] = "1" if branched else ""
    filters = selectors.SessionListFilters.from_query(params)
    listing = selectors.session_list(filters=filters, sort=sort, page=page, per_page=per_page)
    return {
        "items": [
            {
                "session_id": row.session_id,
                "title": row.title,
                "turns": row.turns,
                "branches": row.branches,
                "total_tokens": row.total_tokens,
                "cost": cost_total_out(row.cost) if row.cost is not None else None,
                "created_at": row.created_at,
                "updated_at": row.updated_at,
                "url": row.url,
            }
            for row in listing.rows
        ],
        "page": listing.number,
        "num_pages": listing.num_pages,
        "total": listing.total,
        "sort": listing.sort,
    }


@router.get(
    "/sessions/{session_id}/",
    response={200: dict[str, Any], **_ERRORS},
    summary="One session, whole (the JSON tree export)",
    operation_id="session_get",
)
def session_get(request: HttpRequest, session_id: str = SessionId) -> HttpResponseBase:
    """The whole session as the JSON tree export writes it (every branch, message, structure
    row and usage row; ``docs/exchange.md``): memory stays flat whatever its size."""
    try:
        body, size = spool(export_chunks(session_id=session_id, fmt="json"))
    except AgentSession.DoesNotExist as exc:
        raise ApiError(404, NO_SESSION, field="session_id") from exc
    return spooled_response(body, size, request, content_type=CONTENT_TYPES["json"])


def _turn_out(turn: selectors.Turn) -> dict[str, Any]:
    return {
        "number": turn.number,
        "user_text": turn.user_text,
        "items": [
            {
                "kind": item.kind,
                "text": item.text,
                "label": item.label,
                "tool": None
                if item.tool is None
                else {
                    "call_id": item.tool.call_id,
                    "name": item.tool.name,
                    "kind": item.tool.kind,
                    "arguments": item.tool.arguments,
                    "output": item.tool.output,
                    "status": item.tool.status,
                },
            }
            for item in turn.items
        ],
        "usage": None
        if turn.usage is None
        else {
            "input_tokens": turn.usage.input_tokens,
            "output_tokens": turn.usage.output_tokens,
            "total_tokens": turn.usage.total_tokens,
            "cached_tokens": turn.usage.cached_tokens,
            "reasoning_tokens": turn.usage.reasoning_tokens,
            "requests": turn.usage.requests,
            "branch_id": turn.usage.branch_id,
        },
        "shared_with_parent": turn.shared_with_parent,
        "branches_here": [] if turn.switcher is None else [b for b, _ in turn.switcher.branches],
        "created_at": turn.created_at,
        "url": turn.url,
    }


@router.get(
    "/sessions/{session_id}/branches/{branch_id}/turns/",
    response={200: TurnPage, **_ERRORS},
    summary="A branch's turns, with usage",
    operation_id="turns_list",
)
def turns_list(
    request: HttpRequest,
    session_id: str = SessionId,
    branch_id: str = BranchId,
    page: int = Query(1, ge=1, le=MAX_NUMBER, description="Clamped to the last page."),
    per_page: int = Query(TURNS_PER_PAGE, ge=1, le=MAX_TURNS_PER_PAGE),
) -> dict[str, Any]:
    """A branch's turns, oldest first (turns shared with the parent branch included), each
    with its items (text, tool calls and outputs) and token usage."""
    try:
        tree = selectors.branch_tree_get(session_id=session_id)
        node = tree.node(branch_id)
    except selectors.ReviewError as exc:
        raise _not_found(exc) from exc
    number, num_pages = _pages(node.turns, per_page, page)
    first = (number - 1) * per_page + 1
    last = min(node.turns, first + per_page - 1)
    turns = selectors.turns_get(tree=tree, branch_id=branch_id, first=first, last=last)
    return {
        "session_id": session_id,
        "branch_id": branch_id,
        "items": [_turn_out(turn) for turn in turns],
        "page": number,
        "num_pages": num_pages,
        "total": node.turns,
    }


@router.get(
    "/sessions/{session_id}/usage/",
    response={200: UsageOut, **_ERRORS},
    summary="Token usage of a branch (the charts' data)",
    operation_id="usage_get",
)
def usage_get(
    request: HttpRequest,
    session_id: str = SessionId,
    branch: str = Query(MAIN_BRANCH, max_length=1000, description="The branch (default main)."),
) -> dict[str, Any]:
    """Per-turn usage of ``branch`` and the cumulative line of every branch: what the session
    page's charts draw (its ``usage.json``)."""
    try:
        series = selectors.usage_series_get(
            session_id=session_id, branch_id=checked_text(branch, "branch") or MAIN_BRANCH
        )
    except selectors.ReviewError as exc:
        raise _not_found(exc) from exc
    return series.as_json()


# ---- Review status ------------------------------------------------------------------------------


def _review_out(session_id: str) -> dict[str, Any]:
    review = (
        SessionReview.objects.select_related("assignee", "updated_by").filter(pk=session_id).first()
    )
    if review is None:
        if not AgentSession.objects.filter(pk=session_id).exists():
            raise ApiError(404, NO_SESSION, field="session_id")
        return {
            "session_id": session_id,
            "status": "unreviewed",
            "assignee": None,
            "updated_by": None,
            "updated_at": None,
        }
    return {
        "session_id": session_id,
        "status": review.status,
        "assignee": review.assignee.get_username() if review.assignee else None,
        "updated_by": review.updated_by.get_username() if review.updated_by else None,
        "updated_at": review.updated_at,
    }


@router.get(
    "/sessions/{session_id}/review/",
    response={200: ReviewOut, **_ERRORS},
    summary="A session's review status and assignee",
    operation_id="review_get",
)
def review_get(request: HttpRequest, session_id: str = SessionId) -> dict[str, Any]:
    """The review status (a session nobody reviewed is ``unreviewed``) and the assignee."""
    return _review_out(session_id)


@router.put(
    "/sessions/{session_id}/review/",
    response={200: ReviewOut, 400: Error, **_ERRORS},
    summary="Set a session's review status and/or assignee",
    operation_id="review_set",
)
def review_set(request: HttpRequest, payload: ReviewIn, session_id: str = SessionId) -> Any:
    """Needs the annotate permission. ``assignee``: a username, or ``null`` to unassign."""
    user = require_annotator(request)
    changes: dict[str, Any] = {}
    if payload.status is not None:
        changes["status"] = checked_text(payload.status, "status")
    if "assignee" in payload.model_fields_set:
        if payload.assignee is None:
            changes["assignee"] = None
        else:
            name = checked_text(payload.assignee, "assignee")
            users = get_user_model()._default_manager
            found = users.filter(**{get_user_model().USERNAME_FIELD: name}).first()
            if found is None:
                raise ApiError(400, f"There is no user '{name}'.", field="assignee")
            changes["assignee"] = found
    if not changes:  # nothing asked: nothing written (no audit entry either)
        return _review_out(session_id)
    try:
        review_status_set(user=user, session_id=session_id, **changes)
    except ReviewError as exc:
        status = 404 if exc.field == "session_id" else 400
        raise ApiError(status, str(exc), field=exc.field) from exc
    return _review_out(session_id)
