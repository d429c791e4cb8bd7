"""The branch tree of a session, rebuilt from prefix copies: 3 queries (2 with one branch).

Branching copies a prefix (see ``docs/design.md``), so the tree is not stored: a branch's
parent is the earlier branch sharing the longest run of user-message ids with it, and it forks
at the first turn where those ids differ. Usage rows are not copied on branching, so the usage
of a turn in a shared prefix belongs to the branch that wrote that turn (its "owner").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from django.db import connection

from conversations.items import parse_timestamp
from conversations.models import MAIN_BRANCH, BranchReservation, MessageStructure, TurnUsage
from dashboard.links import session_url

from .errors import BranchNotFound, SessionNotFound

__all__ = ["BranchNode", "BranchTree", "branch_tree_get"]


@dataclass(frozen=True, slots=True)
class BranchNode:
    """One branch as a node of the tree.

    ``fork_turn`` is the first turn the branch does not share with its parent (1 for a root).
    ``own_tokens`` sums the branch's own ``turn_usage`` rows; ``tokens_since_fork`` only those
    from ``fork_turn`` on; ``turns_without_usage`` counts turns since the fork with no row.
    """

    branch_id: str
    parent_id: str | None
    fork_turn: int
    turns: int
    messages: int
    created_at: datetime | None
    depth: int
    own_tokens: int
    tokens_since_fork: int
    turns_without_usage: int
    url: str
    children: tuple[str, ...] = ()


@dataclass(frozen=True)
class BranchTree:
    """All branches of a session with their fork points (one per request; cheap to build)."""

    session_id: str
    nodes: Mapping[str, BranchNode]
    order: tuple[str, ...]  # creation order
    roots: tuple[str, ...]
    prefix: Mapping[tuple[str, str], int] = field(repr=False)  # common user-turn prefix

    def __contains__(self, branch_id: str) -> bool:
        return branch_id in self.nodes

    def node(self, branch_id: str) -> BranchNode:
        """The node of ``branch_id``.

        Raises:
            BranchNotFound: The session has no rows on that branch.
        """
        try:
            return self.nodes[branch_id]
        except KeyError:
            raise BranchNotFound(self.session_id, branch_id) from None

    def path(self, branch_id: str) -> tuple[str, ...]:
        """The branch, its parent, ... up to its root."""
        out: list[str] = []
        current: str | None = branch_id
        while current is not None and current not in out:
            out.append(current)
            current = self.nodes[current].parent_id
        return tuple(out)

    def owner(self, branch_id: str, turn: int) -> str:
        """The branch that wrote ``turn`` of ``branch_id`` (where its usage row lives)."""
        for candidate in self.path(branch_id):
            if self.nodes[candidate].fork_turn <= turn:
                return candidate
        return self.path(branch_id)[-1]

    def common_prefix(self, a: str, b: str) -> int:
        if a == b:
            return self.nodes[a].turns
        return self.prefix.get((a, b), self.prefix.get((b, a), 0))

    def siblings_at(self, branch_id: str, turn: int) -> tuple[str, ...]:
        """One branch per variant of ``turn`` among branches sharing the turns before it.

        Branches that also share ``turn`` are one variant: ``branch_id`` stands for its own,
        the earliest-created member for the others. Ordered by each variant's first member.
        """
        reps: list[str] = []
        members: dict[str, list[str]] = {}
        for other in self.order:
            if other != branch_id and (
                self.common_prefix(branch_id, other) < turn - 1 or self.nodes[other].turns < turn
            ):
                continue
            for rep in reps:
                if self.common_prefix(rep, other) >= turn:
                    members[rep].append(other)
                    break
            else:
                reps.append(other)
                members[other] = [other]
        return tuple(branch_id if branch_id in members[rep] else rep for rep in reps)

    def fork_turns(self, branch_id: str) -> dict[int, tuple[str, ...]]:
        """Turn -> sibling branches, for every turn of ``branch_id`` where others diverge."""
        out: dict[int, tuple[str, ...]] = {}
        for other in self.order:
            if other == branch_id:
                continue
            turn = self.common_prefix(branch_id, other) + 1
            if self.nodes[other].turns >= turn and turn <= self.nodes[branch_id].turns + 1:
                out.setdefault(turn, ())
        return {turn: self.siblings_at(branch_id, turn) for turn in sorted(out)}

    def flat(self) -> tuple[BranchNode, ...]:
        """Nodes in depth-first order (parents before children), for rendering."""
        seen: list[BranchNode] = []

        def walk(branch_id: str) -> None:
            seen.append(self.nodes[branch_id])
            for child in self.nodes[branch_id].children:
                walk(child)

        for root in self.roots:
            walk(root)
        return tuple(seen)


# ---- The branch-summary query of the review tree ------------------------------------------

_SUMMARIES = """
SELECT r.branch_id,
    (SELECT COUNT(*) FROM {ms} s WHERE s.session_id = %s AND s.branch_id = r.branch_id),
    (SELECT MAX(s.user_turn_number) FROM {ms} s
        WHERE s.session_id = %s AND s.branch_id = r.branch_id),
    (SELECT MIN(s.sequence_number) FROM {ms} s
        WHERE s.session_id = %s AND s.branch_id = r.branch_id),
    (SELECT s.created_at FROM {ms} s WHERE s.session_id = %s AND s.branch_id = r.branch_id
        ORDER BY s.sequence_number LIMIT 1)
FROM (SELECT branch_id FROM {br} WHERE session_id = %s
      UNION SELECT CAST(%s AS TEXT)) r
"""


class _Summary(NamedTuple):
    branch_id: str
    messages: int
    turns: int
    first_sequence: int  # creation order: the tree's order
    created_at: datetime | None


def _summary_rows(session_id: str) -> list[_Summary]:
    """One summary per branch with rows, in creation order (first sequence number).

    The review tree's own branch-summary query, on purpose not
    ``MessageStructureQuerySet.branch_summaries()`` (the staff pages' ``GROUP BY branch_id``,
    which reads every row of the session): the tree needs the last turn number and the
    creation order too, on every page view of sessions of any size. Branches come from
    ``branch_reservations`` (every id ever used; small) plus ``main``, and each figure is an
    index lookup on the (session, branch, ...) composite indexes of ``message_structure``
    (the message count is an index-only count). Reserved ids with no rows (deleted or ghost
    branches) are dropped. Raw SQL: the equivalent QuerySet with four subqueries per branch
    costs milliseconds just to compile.
    """
    sql = _SUMMARIES.format(
        ms=connection.ops.quote_name(MessageStructure._meta.db_table),
        br=connection.ops.quote_name(BranchReservation._meta.db_table),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [session_id] * 5 + [MAIN_BRANCH])
        rows = cursor.fetchall()
    out = [
        _Summary(branch, messages or 0, turns or 0, first_seq, parse_timestamp(created))
        for branch, messages, turns, first_seq, created in rows
        if first_seq is not None
    ]
    out.sort(key=lambda row: row.first_sequence)
    return out


# ---- Fork points ----------------------------------------------------------------------------

_PREFIX_SEARCH = """
WITH RECURSIVE pairs(a, b, hi) AS ({values}),
search(a, b, lo, hi) AS (
    SELECT a, b, 0, hi FROM pairs
    UNION ALL
    SELECT a, b,
        CASE WHEN {same} THEN (lo + hi + 1) / 2 ELSE lo END,
        CASE WHEN {same} THEN hi ELSE (lo + hi + 1) / 2 - 1 END
    FROM search WHERE lo < hi
)
SELECT a, b, lo FROM search WHERE lo >= hi
"""
_USER_AT = (
    # MIN(), not ORDER BY ... LIMIT 1: an ORDER BY sequence_number would make SQLite pick
    # the (session, branch, sequence) index and walk the whole branch.
    "(SELECT MIN(message_id) FROM {table} WHERE session_id = {sid} AND branch_id = {branch} "
    "AND user_turn_number = (lo + hi + 1) / 2 AND message_type = 'user')"
)


def _common_prefixes(
    session_id: str, turns: Mapping[str, int], order: Sequence[str]
) -> dict[tuple[str, str], int]:
    """Common user-turn prefix length of every pair of branches: one query.

    Branches are prefix copies, so "turn t holds the same user message on both" is true up
    to the fork and false after it: a binary search per pair, run inside the database as a
    recursive CTE with one index lookup per probe (O(pairs x log turns), not O(rows)).
    """
    pairs = [(a, b) for i, a in enumerate(order) for b in order[i + 1 :]]
    if not pairs:
        return {}
    row = "(CAST(%s AS TEXT), CAST(%s AS TEXT), CAST(%s AS INTEGER))"
    values = "VALUES " + ", ".join([row] * len(pairs))
    table = connection.ops.quote_name(MessageStructure._meta.db_table)
    sid = "CAST(%s AS TEXT)"
    same = f"{_USER_AT.format(table=table, sid=sid, branch='a')} = " + _USER_AT.format(
        table=table, sid=sid, branch="b"
    )
    sql = _PREFIX_SEARCH.format(values=values, same=same)
    params: list[Any] = []
    for a, b in pairs:
        params += [a, b, min(turns[a], turns[b])]
    # "same" appears twice per recursive step, each with two session-id placeholders.
    params += [session_id] * 4
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = {(a, b): lo for a, b, lo in cursor.fetchall()}
    return {pair: found.get(pair, 0) for pair in pairs}


# ---- Usage per branch -----------------------------------------------------------------------

_BRANCH_USAGE = """
WITH forks(branch, fork) AS (VALUES {values})
SELECT u.branch_id, SUM(u.total_tokens),
    SUM(CASE WHEN u.user_turn_number >= f.fork THEN u.total_tokens ELSE 0 END),
    SUM(CASE WHEN u.user_turn_number >= f.fork THEN 1 ELSE 0 END)
FROM {tu} u JOIN forks f ON f.branch = u.branch_id
WHERE u.session_id = %s
GROUP BY u.branch_id
"""


def _branch_usage(session_id: str, forks: Mapping[str, int]) -> dict[str, tuple[int, int, int]]:
    """Branch -> (own tokens, tokens since its fork, usage rows since its fork): one query."""
    if not forks:
        return {}
    sql = _BRANCH_USAGE.format(
        values=", ".join(["(CAST(%s AS TEXT), CAST(%s AS INTEGER))"] * len(forks)),
        tu=connection.ops.quote_name(TurnUsage._meta.db_table),
    )
    params: list[Any] = []
    for branch, fork in forks.items():
        params += [branch, fork]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, session_id])
        return {
            branch: (int(own or 0), int(since or 0), int(rows or 0))
            for branch, own, since, rows in cursor.fetchall()
        }


def branch_tree_get(*, session_id: str) -> BranchTree:
    """Rebuild the branch tree of a session: 3 queries (2 with a single branch).

    Raises:
        SessionNotFound: The session has no rows on any branch.
    """
    summaries = _summary_rows(session_id)
    if not summaries:
        raise SessionNotFound(session_id)
    order = tuple(row.branch_id for row in summaries)
    if MAIN_BRANCH in order:  # main is the trunk even if an import wrote it later
        order = (MAIN_BRANCH, *(b for b in order if b != MAIN_BRANCH))
    info = {row.branch_id: row for row in summaries}

    prefix = _common_prefixes(session_id, {b: info[b].turns for b in order}, order)

    parents: dict[str, str | None] = {}
    forks: dict[str, int] = {}
    for i, branch in enumerate(order):
        best, best_len = None, 0
        for earlier in order[:i]:
            shared = prefix[(earlier, branch)]
            if shared > best_len:
                best, best_len = earlier, shared
        parents[branch] = best
        forks[branch] = best_len + 1 if best is not None else 1

    usage = _branch_usage(session_id, forks)
    children: dict[str, list[str]] = {b: [] for b in order}
    depth: dict[str, int] = {}
    for branch in order:
        parent = parents[branch]
        if parent is not None:
            children[parent].append(branch)
        depth[branch] = 0 if parent is None else depth[parent] + 1
    nodes = {}
    for branch in order:
        summary = info[branch]
        own, since_tokens, since_rows = usage.get(branch, (0, 0, 0))
        since_turns = max(0, summary.turns - forks[branch] + 1)
        nodes[branch] = BranchNode(
            branch_id=branch,
            parent_id=parents[branch],
            fork_turn=forks[branch],
            turns=summary.turns,
            messages=summary.messages,
            created_at=summary.created_at,
            depth=depth[branch],
            own_tokens=own,
            tokens_since_fork=since_tokens,
            turns_without_usage=max(0, since_turns - since_rows),
            url=session_url(session_id, branch),
            children=tuple(children[branch]),
        )
    roots = tuple(b for b in order if parents[b] is None)
    return BranchTree(session_id=session_id, nodes=nodes, order=order, roots=roots, prefix=prefix)
