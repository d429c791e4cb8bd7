"""A turn's traces and spans (issue 16): ``GET .../branches/{branch_id}/turns/{n}/trace/``.

The turn is read from the branch that wrote it (``BranchTree.owner``, as its usage row), so a
turn a branch shares with its parent answers the parent's trace. An unknown session, branch or
turn is 404; a turn that exists but was recorded without a trace (an SDK file, an import, a
run without the processor) is 200 with ``traced: false``, ``traces: []`` and a ``note``: the
turn is there, it just has nothing traced. Costs are the ones recorded with each model span
(``AgentSpan.cost_nanos``).

Queries: the branch tree (2-3), the turn's traces (1), their spans (1, none without traces),
whatever the size of the session or of the trace.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import F
from django.http import HttpRequest
from ninja import Router
from ninja.params.functions import Path

from conversations.costs import Cost, describe, stored_cost, total
from conversations.models import MODEL_SPAN_KINDS, SPAN_FIELDS, AgentSpan, AgentTrace
from dashboard.review import selectors

from .errors import NO_BRANCH, NO_SESSION, ApiError
from .schemas import MAX_NUMBER, Error, TurnTraceOut, ValidationErrors, cost_total_out

__all__ = ["MAX_SPANS", "NO_TRACE", "NO_TURN", "router"]

router = Router(tags=["traces"])

#: The most spans one answer holds (``truncated`` says when there were more).
MAX_SPANS = 10_000
#: The most traces of one turn read (a turn normally has one; retries add a few).
MAX_TRACES = 100
NO_TURN = "No such turn on this branch."
NO_TRACE = (
    "This turn was recorded without a trace (an SDK file, an import, or a run without "
    "Forkview's trace processor)."
)

_SPAN_FIELDS = (*SPAN_FIELDS, "trace_id", "cost_nanos")


def _cost_out(cost: Cost) -> dict[str, Any]:
    return {
        "usd": None if cost.usd is None else str(cost.usd),
        "model": cost.model,
        "free": cost.free,
        "text": describe(total([cost])),
    }


def _total_out(costs: Iterable[Cost]) -> dict[str, Any]:
    return cost_total_out(total(costs))


def _ms(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() * 1000, 3)


@router.get(
    "/sessions/{session_id}/branches/{branch_id}/turns/{n}/trace/",
    response={200: TurnTraceOut, 401: Error, 403: Error, 404: Error, 422: ValidationErrors},
    summary="A turn's traces and spans, with cost",
    operation_id="turn_trace_get",
)
def turn_trace_get(
    request: HttpRequest,
    session_id: str = Path(..., description="The session id, one percent-encoded path segment."),
    branch_id: str = Path(..., description="The branch id, one percent-encoded path segment."),
    n: int = Path(..., ge=1, le=MAX_NUMBER, description="The user turn (1 is the first)."),
) -> dict[str, Any]:
    """The traces of turn ``n`` of the branch (usually one: the run that answered it), each
    with its spans (the tree by ``parent_id``; times, durations, errors, model and tokens,
    data) and the cost of its model calls (as recorded with each span). A turn recorded
    without a trace answers ``traced: false`` and no traces."""
    try:
        tree = selectors.branch_tree_get(session_id=session_id)
        node = tree.node(branch_id)
    except selectors.BranchNotFound as exc:
        raise ApiError(404, NO_BRANCH, field="branch_id") from exc
    except selectors.ReviewError as exc:
        raise ApiError(404, NO_SESSION, field="session_id") from exc
    if n > node.turns:
        raise ApiError(404, NO_TURN, field="n")
    owner = tree.owner(branch_id, n)
    start = F("started_at").asc(nulls_first=True)
    traces = list(
        AgentTrace.objects.filter(session_id=session_id, branch_id=owner, turn=n)
        .order_by(start, "trace_id")
        .values_list("trace_id", "workflow_name", "group_id", "metadata", "started_at", "ended_at")[
            :MAX_TRACES
        ]
    )
    spans: dict[str, list[dict[str, Any]]] = {t[0]: [] for t in traces}
    costs: dict[str, list[Cost]] = {t[0]: [] for t in traces}
    rows: list[tuple[Any, ...]] = []
    if traces:
        rows = list(
            AgentSpan.objects.filter(trace_id__in=list(spans))
            .order_by(start, "span_id")
            .values_list(*_SPAN_FIELDS)[: MAX_SPANS + 1]
        )
    for row in rows[:MAX_SPANS]:
        span = dict(zip(_SPAN_FIELDS, row, strict=True))
        trace_id = span.pop("trace_id")
        cost = None
        cost_nanos = span.pop("cost_nanos")
        if span["kind"] in MODEL_SPAN_KINDS:
            cost = stored_cost(span["model"], cost_nanos)
            costs[trace_id].append(cost)
        span["cost"] = None if cost is None else _cost_out(cost)
        spans[trace_id].append(span)
    return {
        "session_id": session_id,
        "branch_id": branch_id,
        "turn": n,
        "owner_branch": owner,
        "traced": bool(traces),
        "note": None if traces else NO_TRACE,
        "cost": _total_out(c for cs in costs.values() for c in cs),
        "truncated": len(rows) > MAX_SPANS,
        "traces": [
            {
                "trace_id": trace_id,
                "workflow_name": workflow,
                "group_id": group,
                "metadata": metadata,
                "started_at": started,
                "ended_at": ended,
                "duration_ms": _ms(started, ended),
                "cost": _total_out(costs[trace_id]),
                "spans": spans[trace_id],
            }
            for trace_id, workflow, group, metadata, started, ended in traces
        ],
    }
