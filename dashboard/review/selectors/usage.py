"""The usage series behind a session page's token charts (and their JSON twin, usage.json).

The one read here that is the whole session by nature: one usage row per turn of every
branch, read raw (no per-row JSON field decoding), plus the session's traces for the cost
lines (``traces.session_traces_get``), in 7 queries whatever the size.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection

from conversations.classify import TOOL_CALL_TYPES
from conversations.costs import add_totals, describe
from conversations.items import decode_or_none
from conversations.models import MessageStructure, TurnUsage

from .traces import TurnTrace, session_traces_get
from .tree import branch_tree_get

__all__ = ["CumulativeLine", "UsagePoint", "UsageSeries", "token_detail", "usage_series_get"]


@dataclass(frozen=True, slots=True)
class UsagePoint:
    turn: int
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    cached_tokens: int | None
    reasoning_tokens: int | None
    owner: str | None
    missing: bool
    cost_usd: float | None = None  # the turn's traced model calls; None: no trace or no price
    cost: str = ""  # the same in words ("$0.0042", "free", "no price"); "" without a trace


@dataclass(frozen=True, slots=True)
class CumulativeLine:
    branch_id: str
    fork_turn: int
    points: tuple[tuple[int, int], ...]  # (turn, cumulative tokens), from fork_turn - 1 on
    current: bool
    cost_points: tuple[tuple[int, float], ...] = ()  # (turn, cumulative USD), like points


@dataclass(frozen=True)
class UsageSeries:
    session_id: str
    branch_id: str
    per_turn: tuple[UsagePoint, ...]
    cumulative: tuple[CumulativeLine, ...]
    branch_tokens: int  # tokens along the whole path of this branch (shared prefix included)
    missing_turns: tuple[int, ...]
    tool_calls: tuple[tuple[int, str, int], ...] = ()  # (turn, tool, calls) on this branch
    path_cost_usd: float | None = None  # priced traced turns along the path (None: none)
    path_cost: str = ""  # the same in words, with what was not priced

    def as_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "branch": self.branch_id,
            "path_total_tokens": self.branch_tokens,
            "path_cost_usd": self.path_cost_usd,
            "path_cost": self.path_cost,
            "missing_turns": list(self.missing_turns),
            "per_turn": [
                {
                    "turn": p.turn,
                    "input_tokens": p.input_tokens,
                    "output_tokens": p.output_tokens,
                    "total_tokens": p.total_tokens,
                    "cached_tokens": p.cached_tokens,
                    "reasoning_tokens": p.reasoning_tokens,
                    "owner": p.owner,
                    "missing": p.missing,
                    "cost_usd": p.cost_usd,
                    "cost": p.cost,
                }
                for p in self.per_turn
            ],
            "cumulative": [
                {
                    "branch": line.branch_id,
                    "fork_turn": line.fork_turn,
                    "current": line.current,
                    "points": [{"turn": t, "tokens": v} for t, v in line.points],
                    "cost_points": [{"turn": t, "usd": v} for t, v in line.cost_points],
                }
                for line in self.cumulative
            ],
            "tool_calls": [
                {"turn": turn, "tool": tool, "calls": calls}
                for turn, tool, calls in self.tool_calls
            ],
        }


#: (input, output, total, cached, reasoning) tokens of one usage row.
_Counts = tuple[int, int, int, int, int]


def token_detail(details: Any, key: str) -> int:
    """An integer of a usage details column (``cached_tokens``, ``reasoning_tokens``), or 0."""
    if isinstance(details, dict):
        value = details.get(key)
        if isinstance(value, int):
            return value
    return 0


def _tool_calls(session_id: str, branch_id: str) -> tuple[tuple[int, str, int], ...]:
    """(turn, tool, calls) along a branch (its rows include the shared prefix), by turn."""
    table = connection.ops.quote_name(MessageStructure._meta.db_table)
    kinds = ", ".join(["%s"] * len(TOOL_CALL_TYPES))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT branch_turn_number, COALESCE(tool_name, message_type), COUNT(*) FROM {table} "
            f"WHERE session_id = %s AND branch_id = %s AND message_type IN ({kinds}) "
            "GROUP BY branch_turn_number, COALESCE(tool_name, message_type) ORDER BY 1, 2",
            [session_id, branch_id, *TOOL_CALL_TYPES],
        )
        return tuple((turn, tool, calls) for turn, tool, calls in cursor.fetchall())


def usage_series_get(*, session_id: str, branch_id: str) -> UsageSeries:
    """Per-turn usage, cost and tool calls of a branch, cumulative token and cost lines for every
    branch: 7 queries (2 of them the traces, for the costs).

    A branch's cumulative line counts its shared prefix (the owners' rows) and starts at
    its fork turn, so the lines of all branches meet where they diverge.

    Raises:
        SessionNotFound: The session has no rows.
        BranchNotFound: The branch has no rows.
    """
    tree = branch_tree_get(session_id=session_id)
    tree.node(branch_id)
    rows: dict[tuple[str, int], _Counts] = {}
    # Raw rows: one per turn of every branch, so skip the ORM's per-row JSON field decoding.
    table = connection.ops.quote_name(TurnUsage._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT branch_id, user_turn_number, input_tokens, output_tokens, total_tokens, "
            f"input_tokens_details, output_tokens_details FROM {table} WHERE session_id = %s",
            [session_id],
        )
        for b, turn, inp, outp, total, in_d, out_d in cursor.fetchall():
            rows[(b, turn)] = (
                inp or 0,
                outp or 0,
                total or 0,
                token_detail(decode_or_none(in_d), "cached_tokens"),
                token_detail(decode_or_none(out_d), "reasoning_tokens"),
            )

    def series(branch: str) -> list[tuple[int, _Counts | None, str]]:
        # Walk the path root-first: each ancestor owns the turns up to its child's fork.
        out: list[tuple[int, _Counts | None, str]] = []
        path = tree.path(branch)[::-1]
        last = tree.nodes[branch].turns
        for index, owner in enumerate(path):
            start = max(1, tree.nodes[owner].fork_turn) if index else 1
            end = tree.nodes[path[index + 1]].fork_turn - 1 if index + 1 < len(path) else last
            get = rows.get
            out.extend((turn, get((owner, turn)), owner) for turn in range(start, end + 1))
        return out

    traces = session_traces_get(tree=tree)

    def cost_of(owner: str, turn: int) -> TurnTrace | None:
        return traces.turns.get((owner, turn))

    per_turn = []
    missing = []
    path_costs = []
    for turn, values, owner in series(branch_id):
        traced = cost_of(owner, turn)
        usd = traced.cost_usd if traced is not None else None
        cost = (
            float(usd) if usd is not None else None,
            traced.cost_text if traced is not None else "",
        )
        if traced is not None:
            path_costs.append(traced.cost)
        if values is None:
            missing.append(turn)
            per_turn.append(UsagePoint(turn, None, None, None, None, None, None, True, *cost))
        else:
            per_turn.append(UsagePoint(turn, *values, owner, False, *cost))
    lines = []
    path_total = 0
    for branch in tree.order:
        node = tree.nodes[branch]
        cumulative = 0
        cumulative_usd = Decimal(0)
        points = []
        cost_points = []
        for turn, values, owner in series(branch):
            cumulative += values[2] if values else 0
            traced = cost_of(owner, turn)
            cumulative_usd += traced.cost.usd if traced is not None else 0
            if turn >= node.fork_turn - 1:
                points.append((turn, cumulative))
                cost_points.append((turn, float(round(cumulative_usd, 6))))
        if branch == branch_id:
            path_total = cumulative
        lines.append(
            CumulativeLine(
                branch,
                node.fork_turn,
                tuple(points),
                current=branch == branch_id,
                cost_points=tuple(cost_points),
            )
        )
    path_cost = add_totals(path_costs)
    return UsageSeries(
        session_id=session_id,
        branch_id=branch_id,
        per_turn=tuple(per_turn),
        cumulative=tuple(lines),
        branch_tokens=path_total,
        missing_turns=tuple(missing),
        tool_calls=_tool_calls(session_id, branch_id),
        path_cost_usd=float(path_cost.usd) if path_cost.priced else None,
        path_cost=describe(path_cost),
    )
