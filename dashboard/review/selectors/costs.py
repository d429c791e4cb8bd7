"""What each turn, branch and session cost (issue 16 item 4): prices from ``conversations.costs``.

A turn's cost is the sum over its linked traces' response/generation spans
(``AgentTrace.session_id/branch_id/turn`` -> ``AgentSpan`` by ``trace_id``). A turn with usage
but no trace is priced with ``FORKVIEW_DEFAULT_MODEL`` and marked estimated (or has no price
without that setting). Like tokens, a turn of a shared prefix belongs to the branch that wrote
it (its owner, see ``tree.py``), and a branch's own cost counts its turns since the fork.

Queries: :func:`session_turn_costs` 1 (2 with ``FORKVIEW_DEFAULT_MODEL``), whatever the size;
:func:`turn_costs` and :func:`branch_cost` add the tree's 2-3 unless given ``tree``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from django.db import connection

from conversations.costs import (
    EMPTY_TOTAL,
    Cost,
    CostTotal,
    add_totals,
    default_model,
    estimated_cost,
    response_cost,
    total,
)
from conversations.items import decode_or_none, parse_timestamp
from conversations.models import AgentSpan, AgentTrace, SpanKind, TurnUsage

from .tree import BranchTree, branch_tree_get
from .usage import token_detail

__all__ = [
    "MODEL_SPAN_KINDS",
    "branch_cost",
    "session_cost",
    "session_costs",
    "session_turn_costs",
    "turn_costs",
]

#: The spans that carry a model and its usage.
MODEL_SPAN_KINDS = (SpanKind.RESPONSE.value, SpanKind.GENERATION.value)

_TurnKey = tuple[str, int]  # (branch that wrote the turn, turn)


def _when(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return parse_timestamp(value)
    return None


def _traced_costs(session_ids: Iterable[str]) -> dict[str, dict[_TurnKey, list[Cost]]]:
    """Per session, (branch, turn) -> the costs of its model spans; a traced turn without
    model spans maps to an empty list (it is traced: never estimated). One query."""
    ids = list(dict.fromkeys(session_ids))
    out: dict[str, dict[_TurnKey, list[Cost]]] = {sid: {} for sid in ids}
    if not ids:
        return out
    traces = connection.ops.quote_name(AgentTrace._meta.db_table)
    spans = connection.ops.quote_name(AgentSpan._meta.db_table)
    marks = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.session_id, t.branch_id, t.turn, s.model, s.input_tokens, s.output_tokens, "
            f"s.cached_input_tokens, s.reasoning_tokens, s.started_at FROM {traces} t "
            f"LEFT JOIN {spans} s ON s.trace_id = t.trace_id AND s.kind IN (%s, %s) "
            f"WHERE t.session_id IN ({marks}) AND t.turn IS NOT NULL",
            [*MODEL_SPAN_KINDS, *ids],
        )
        for sid, branch, turn, model, inp, outp, cached, reasoning, started in cursor.fetchall():
            costs = out[sid].setdefault((branch or "", int(turn)), [])
            if inp is None and outp is None and model is None:
                continue  # the trace has no model span (LEFT JOIN's empty row)
            costs.append(
                response_cost(
                    model=model,
                    input_tokens=inp,
                    output_tokens=outp,
                    cached_input_tokens=cached,
                    reasoning_tokens=reasoning,
                    at=_when(started),
                )
            )
    return out


def _estimates(session_ids: list[str], traced: dict[str, dict[_TurnKey, list[Cost]]]) -> None:
    """Add turns with usage but no trace, priced with FORKVIEW_DEFAULT_MODEL. One query."""
    if not default_model() or not session_ids:
        return
    table = connection.ops.quote_name(TurnUsage._meta.db_table)
    marks = ", ".join(["%s"] * len(session_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT session_id, branch_id, user_turn_number, input_tokens, output_tokens, "
            f"input_tokens_details, created_at FROM {table} WHERE session_id IN ({marks})",
            session_ids,
        )
        for sid, branch, turn, inp, outp, details, created in cursor.fetchall():
            key = (branch or "", int(turn))
            if key in traced[sid]:
                continue
            cached = token_detail(decode_or_none(details), "cached_tokens")
            traced[sid][key] = [
                estimated_cost(
                    input_tokens=inp,
                    output_tokens=outp,
                    cached_input_tokens=cached,
                    at=_when(created),
                )
            ]


def session_turn_costs(session_id: str) -> dict[_TurnKey, CostTotal]:
    """(branch that wrote the turn, turn) -> its cost, for every priced or traced turn of a
    session: 1 query (2 with ``FORKVIEW_DEFAULT_MODEL``)."""
    by_session = _traced_costs([session_id])
    _estimates([session_id], by_session)
    return {key: total(costs) for key, costs in by_session[session_id].items()}


def session_costs(session_ids: Iterable[str]) -> dict[str, CostTotal]:
    """Session -> its whole cost (every branch's own turns), for a page of sessions:
    1 query (2 with ``FORKVIEW_DEFAULT_MODEL``) whatever the number of sessions."""
    ids = list(dict.fromkeys(session_ids))
    by_session = _traced_costs(ids)
    _estimates(ids, by_session)
    return {
        sid: total(cost for costs in turns.values() for cost in costs)
        for sid, turns in by_session.items()
    }


def session_cost(session_id: str) -> CostTotal:
    """The whole cost of a session (every branch's own turns): 1-2 queries."""
    return session_costs([session_id])[session_id]


def turn_costs(
    session_id: str,
    branch_id: str,
    *,
    tree: BranchTree | None = None,
    costs: dict[_TurnKey, CostTotal] | None = None,
) -> dict[int, CostTotal]:
    """Turn -> cost along ``branch_id`` (the shared prefix's turns from their owners), for
    every turn of the branch (an empty total where nothing is known).

    Pass the page's ``tree`` and a :func:`session_turn_costs` result to save their queries.

    Raises:
        SessionNotFound, BranchNotFound: as ``branch_tree_get`` / ``BranchTree.node``.
    """
    tree = tree or branch_tree_get(session_id=session_id)
    node = tree.node(branch_id)
    costs = session_turn_costs(session_id) if costs is None else costs
    return {
        turn: costs.get((tree.owner(branch_id, turn), turn), EMPTY_TOTAL)
        for turn in range(1, node.turns + 1)
    }


def branch_cost(
    session_id: str,
    branch_id: str,
    *,
    since_fork: bool = True,
    tree: BranchTree | None = None,
    costs: dict[_TurnKey, CostTotal] | None = None,
) -> CostTotal:
    """A branch's cost: its own turns since the fork (like ``tokens_since_fork``), or with
    ``since_fork=False`` its whole path (the shared prefix included)."""
    tree = tree or branch_tree_get(session_id=session_id)
    node = tree.node(branch_id)
    per_turn = turn_costs(session_id, branch_id, tree=tree, costs=costs)
    start = node.fork_turn if since_fork else 1
    return add_totals(value for turn, value in per_turn.items() if turn >= start)


def cumulative_costs(
    session_id: str,
    *,
    tree: BranchTree | None = None,
    costs: dict[_TurnKey, CostTotal] | None = None,
) -> dict[str, list[tuple[int, float]]]:
    """Branch -> [(turn, cumulative dollars)] from the turn before its fork on (like the
    cumulative token lines: every branch's line meets its parent's where they diverge)."""
    tree = tree or branch_tree_get(session_id=session_id)
    costs = session_turn_costs(session_id) if costs is None else costs
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for branch in tree.order:
        node = tree.nodes[branch]
        running = 0.0
        for turn, value in turn_costs(session_id, branch, tree=tree, costs=costs).items():
            running += float(value.usd)
            if turn >= node.fork_turn - 1:
                out[branch].append((turn, running))
    return dict(out)
