"""Traces per turn and cost per branch (issue 16 items 3-4), and the waterfall's JSON twin.

A session's traces (``forkview_traces``, linked by ``session_id``/``branch_id``/``turn``) are
read whole, with their spans aggregated in the database per (trace, kind, model): 2 queries
whatever the size of the session or of its traces. A branch's turn is read from the branch
that wrote it (``BranchTree.owner``), like its usage row, so a turn shared with the parent
shows the parent's trace. Costs are the ones recorded with each model span
(``AgentSpan.cost_nanos``, priced when written by ``conversations.costs``), summed in the
database.

The waterfall (:func:`turn_spans_get`) reads one turn's spans: 2 queries, at most
``MAX_SPANS`` spans.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Count, Max, Min, Q, Sum

from conversations.costs import (
    EMPTY_TOTAL,
    CostTotal,
    add_totals,
    default_model,
    describe,
    estimated_cost,
    recorded_total,
    stored_cost,
    total,
)
from conversations.models import MODEL_SPAN_KINDS, AgentSpan, AgentTrace, SpanKind, TurnUsage

from .tree import BranchTree

__all__ = [
    "MAX_SPANS",
    "BranchCost",
    "SessionTraces",
    "TurnSpans",
    "TurnTrace",
    "duration_text",
    "session_traces_get",
    "turn_spans_get",
]

#: The most spans one waterfall shows (the rest are counted, not sent).
MAX_SPANS = 2000
#: The longest span name sent to the page.
MAX_NAME = 200

_TOOL_CALLS = (SpanKind.FUNCTION, SpanKind.MCP_TOOLS)


@dataclass(frozen=True)
class TurnTrace:
    """What a turn's trace(s) say: who answered, how long it took, what it cost.

    ``traced`` is False for a turn recorded without traces (SDK files, imports): the page says
    "no trace" (with ``FORKVIEW_DEFAULT_MODEL`` its usage row is priced, marked estimated).
    ``latency_ms`` is the wall time from the first trace's start to the last one's end;
    ``ttft_ms`` the time to first token when the chat recorded it (trace metadata
    ``forkview_ttft_ms``), else None.
    """

    turn: int
    branch_id: str  # the branch that wrote the turn (an ancestor for a shared turn)
    traced: bool
    traces: int = 0
    models: tuple[str, ...] = ()
    latency_ms: float | None = None
    ttft_ms: float | None = None
    model_calls: int = 0
    tool_calls: int = 0
    errors: int = 0
    cost: CostTotal = EMPTY_TOTAL

    @property
    def cost_text(self) -> str:
        return describe(self.cost)

    @property
    def latency_text(self) -> str:
        return duration_text(self.latency_ms)

    @property
    def ttft_text(self) -> str:
        return duration_text(self.ttft_ms)

    @property
    def models_text(self) -> str:
        return ", ".join(self.models) or "model unknown"

    @property
    def cost_usd(self) -> Decimal | None:
        return self.cost.usd if self.cost.priced else None


@dataclass(frozen=True)
class BranchCost:
    """A branch's cost since its fork (its own turns, like ``tokens_since_fork``; estimated
    untraced turns included when ``FORKVIEW_DEFAULT_MODEL`` is set)."""

    branch_id: str
    since_fork: CostTotal
    traced_turns: int

    @property
    def text(self) -> str:
        return describe(self.since_fork)


@dataclass(frozen=True)
class SessionTraces:
    """Every traced turn of a session, by the branch that wrote it."""

    tree: BranchTree
    turns: Mapping[tuple[str, int], TurnTrace] = field(repr=False)

    def turn(self, branch_id: str, turn: int) -> TurnTrace:
        """The turn ``turn`` of ``branch_id`` (read from its owner; untraced if none)."""
        owner = self.tree.owner(branch_id, turn) if branch_id in self.tree else branch_id
        found = self.turns.get((owner, turn))
        return found if found is not None else TurnTrace(turn=turn, branch_id=owner, traced=False)

    def for_turns(self, branch_id: str, numbers: Iterable[int]) -> tuple[TurnTrace, ...]:
        return tuple(self.turn(branch_id, n) for n in numbers)

    def branch_cost(self, branch_id: str) -> BranchCost:
        """The cost of the turns ``branch_id`` wrote itself (since its fork)."""
        own = [t for (owner, _), t in self.turns.items() if owner == branch_id]
        return BranchCost(
            branch_id=branch_id,
            since_fork=add_totals(t.cost for t in own),
            traced_turns=sum(t.traced for t in own),
        )

    def branch_costs(self) -> tuple[BranchCost, ...]:
        return tuple(self.branch_cost(b) for b in self.tree.order)

    @property
    def session_cost(self) -> CostTotal:
        """Every branch's own turns, each turn once (estimated ones included)."""
        return add_totals(t.cost for t in self.turns.values())

    @property
    def session_cost_text(self) -> str:
        return describe(self.session_cost)

    def path_cost(self, branch_id: str, first: int = 1, last: int | None = None) -> CostTotal:
        """The cost of turns ``first..last`` of ``branch_id`` (shared ones included)."""
        end = self.tree.nodes[branch_id].turns if last is None else last
        return add_totals(self.turn(branch_id, n).cost for n in range(first, end + 1))


def duration_text(ms: float | None) -> str:
    """``450 ms``, ``2.3 s``, ``1 min 5 s``; ``""`` for None."""
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(round(ms / 1000), 60)
    return f"{minutes} min {seconds} s"


def _ms(value: Any) -> float | None:
    """A finite, non-negative number of milliseconds, or None (metadata is user data)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


@dataclass
class _Acc:
    starts: list[datetime] = field(default_factory=list)
    span_starts: list[datetime] = field(default_factory=list)  # when a trace's start is missing
    ends: list[datetime] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    models: dict[str, None] = field(default_factory=dict)
    traces: int = 0
    model_calls: int = 0
    tool_calls: int = 0
    errors: int = 0
    cost_nanos: int = 0
    unpriced: int = 0


def session_traces_get(*, tree: BranchTree) -> SessionTraces:
    """The traced turns of a session (2 queries, whatever its size)."""
    session_id = tree.session_id
    linked = AgentTrace.objects.filter(session_id=session_id, turn__isnull=False).exclude(
        branch_id__isnull=True
    )
    place: dict[str, tuple[str, int]] = {}
    accs: dict[tuple[str, int], _Acc] = {}
    for trace_id, branch_id, turn, started, ended, metadata in linked.values_list(
        "trace_id", "branch_id", "turn", "started_at", "ended_at", "metadata"
    ):
        if turn is None:  # excluded by the query; keeps the type checker certain
            continue
        key = (str(branch_id), int(turn))
        place[trace_id] = key
        acc = accs.setdefault(key, _Acc())
        acc.traces += 1
        if started is not None:
            acc.starts.append(started)
        if ended is not None:
            acc.ends.append(ended)
        ttft = _ms(metadata.get("forkview_ttft_ms")) if isinstance(metadata, dict) else None
        if ttft is not None:
            acc.ttft.append(ttft)
    spans = (
        AgentSpan.objects.filter(trace_id__in=linked.values("trace_id"))
        .values("trace_id", "kind", "model")
        .annotate(
            n=Count("span_id"),
            errors=Count("span_id", filter=Q(error__isnull=False)),
            nanos=Sum("cost_nanos"),
            priced=Count("cost_nanos"),
            first=Min("started_at"),
            last=Max("ended_at"),
        )
        .order_by()
    )
    for row in spans:
        found = place.get(row["trace_id"])
        if found is None:
            continue
        acc = accs[found]
        acc.errors += row["errors"]
        if row["first"] is not None:
            acc.span_starts.append(row["first"])
        if row["last"] is not None:
            acc.ends.append(row["last"])
        if row["kind"] in MODEL_SPAN_KINDS:
            acc.model_calls += row["n"]
            model = row["model"] or ""
            if model:
                acc.models[model[:MAX_NAME]] = None
            acc.cost_nanos += int(row["nanos"] or 0)
            acc.unpriced += row["n"] - row["priced"]
        elif row["kind"] in _TOOL_CALLS:
            acc.tool_calls += row["n"]
    turns = {
        key: TurnTrace(
            turn=key[1],
            branch_id=key[0],
            traced=True,
            traces=acc.traces,
            models=tuple(acc.models),
            latency_ms=_latency(acc),
            ttft_ms=min(acc.ttft) if acc.ttft else None,
            model_calls=acc.model_calls,
            tool_calls=acc.tool_calls,
            errors=acc.errors,
            cost=recorded_total(
                cost_nanos=acc.cost_nanos, calls=acc.model_calls, unpriced=acc.unpriced
            ),
        )
        for key, acc in accs.items()
    }
    if default_model():
        _estimate_untraced(tree, turns)
    return SessionTraces(tree=tree, turns=turns)


def _estimate_untraced(tree: BranchTree, turns: dict[tuple[str, int], TurnTrace]) -> None:
    """Turns with a usage row but no trace, priced with ``FORKVIEW_DEFAULT_MODEL`` and marked
    estimated (still "no trace"): one query, only when that setting is on."""
    rows = (
        TurnUsage.objects.for_session(tree.session_id)
        .values_list(
            "branch_id", "user_turn_number", "input_tokens", "output_tokens", "input_tokens_details"
        )
        .order_by()
    )
    for branch_id, turn, inp, out, details in rows:
        key = (branch_id, turn)
        if key in turns or branch_id not in tree or tree.owner(branch_id, turn) != branch_id:
            continue
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        cost = estimated_cost(
            input_tokens=inp,
            output_tokens=out,
            cached_input_tokens=cached if isinstance(cached, int) else None,
        )
        turns[key] = TurnTrace(
            turn=turn,
            branch_id=branch_id,
            traced=False,
            cost=total([cost]) if cost.usd else EMPTY_TOTAL,
        )


def _latency(acc: _Acc) -> float | None:
    starts = acc.starts or acc.span_starts
    if not starts or not acc.ends:
        return None
    return max(0.0, (max(acc.ends) - min(starts)).total_seconds() * 1000)


# ---- The waterfall's JSON twin ----------------------------------------------------------------


@dataclass(frozen=True)
class TurnSpans:
    """One turn's traces and spans, times in ms from the first trace's start."""

    session_id: str
    branch_id: str  # the branch asked for
    owner: str  # the branch that wrote the turn
    turn: int
    traces: tuple[dict[str, Any], ...]
    spans: tuple[dict[str, Any], ...]
    truncated: bool  # more than MAX_SPANS spans: the rest were not sent

    def as_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "branch": self.branch_id,
            "owner": self.owner,
            "turn": self.turn,
            "traced": bool(self.traces),
            "traces": list(self.traces),
            "spans": list(self.spans),
            "truncated": self.truncated,
        }


def _text(value: Any, limit: int = MAX_NAME) -> str:
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    text = text.replace("\x00", "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_message(error: Any) -> str | None:
    if error is None:
        return None
    if isinstance(error, dict):
        message = error.get("message")
        data = error.get("data")
        detail = data.get("error") if isinstance(data, dict) else None
        parts = [_text(message, 500) if message else "error"]
        if detail:
            parts.append(_text(detail, 500))
        return ": ".join(parts)
    return _text(error, 500) or "error"


def turn_spans_get(*, tree: BranchTree, branch_id: str, turn: int) -> TurnSpans:
    """The spans of turn ``turn`` of ``branch_id`` (2 queries).

    Raises:
        BranchNotFound: The branch has no rows in the session.
    """
    tree.node(branch_id)
    owner = tree.owner(branch_id, turn)
    traces = list(
        AgentTrace.objects.filter(session_id=tree.session_id, branch_id=owner, turn=turn)
        .order_by("started_at", "trace_id")
        .values_list("trace_id", "workflow_name", "started_at", "ended_at")[:50]
    )
    ids = [t[0] for t in traces]
    rows = list(
        AgentSpan.objects.filter(trace_id__in=ids)
        .order_by("started_at", "span_id")
        .values_list(
            "span_id",
            "trace_id",
            "parent_id",
            "kind",
            "name",
            "started_at",
            "ended_at",
            "duration_ms",
            "error",
            "model",
            "input_tokens",
            "output_tokens",
            "cost_nanos",
        )[: MAX_SPANS + 1]
    )
    starts = [t[2] for t in traces if t[2] is not None] + [r[5] for r in rows if r[5] is not None]
    origin = min(starts) if starts else None

    def offset(value: datetime | None) -> float | None:
        if value is None or origin is None:
            return None
        return round((value - origin).total_seconds() * 1000, 3)

    spans = []
    for (
        span_id,
        trace_id,
        parent_id,
        kind,
        name,
        started,
        ended,
        duration,
        error,
        model,
        inp,
        out,
        cost_nanos,
    ) in rows[:MAX_SPANS]:
        start_ms = offset(started)
        end_ms = offset(ended)
        duration_ms = _ms(duration)
        if duration_ms is None and start_ms is not None and end_ms is not None:
            duration_ms = max(0.0, end_ms - start_ms)
        cost = stored_cost(model, cost_nanos) if kind in MODEL_SPAN_KINDS else None
        spans.append(
            {
                "id": _text(span_id),
                "trace": _text(trace_id),
                "parent": _text(parent_id) if parent_id else None,
                "kind": _text(kind, 32),
                "name": _text(name),
                "start_ms": start_ms,
                "duration_ms": None if duration_ms is None else round(duration_ms, 3),
                "error": _error_message(error),
                "model": _text(model) if model else None,
                "input_tokens": inp,
                "output_tokens": out,
                "cost": describe(total([cost])) if cost is not None else None,
            }
        )
    return TurnSpans(
        session_id=tree.session_id,
        branch_id=branch_id,
        owner=owner,
        turn=turn,
        traces=tuple(
            {
                "id": _text(trace_id),
                "workflow": _text(workflow),
                "start_ms": offset(started),
                "duration_ms": (
                    round((ended - started).total_seconds() * 1000, 3)
                    if started is not None and ended is not None
                    else None
                ),
            }
            for trace_id, workflow, started, ended in traces
        ),
        spans=tuple(spans),
        truncated=len(rows) > MAX_SPANS,
    )
