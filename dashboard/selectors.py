"""Page-shaped reads for the review UI: each returns frozen dataclasses, never model instances.

Every selector runs a fixed number of queries whatever the size of the session, and the work
done in Python is bounded by what the page shows (one page of turns), except where the page
is the whole session by nature (the usage series behind the charts: one row per turn).

The branch tree is rebuilt from prefix copies (see ``docs/design.md``): a branch's parent is
the earlier branch sharing the longest run of user-message ids with it, and it forks at the
first turn where those ids differ. Usage rows are not copied on branching, so the usage of a
turn in a shared prefix belongs to the branch that wrote that turn (its "owner").
"""

from __future__ import annotations

import difflib
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import (
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    Sum,
    TextField,
    Value,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce
from django.http import Http404
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.html import escape
from django.utils.timezone import is_naive, make_aware

from conversations.classify import TOOL_CALL_TYPES
from conversations.fields import UndecodableJSON
from conversations.models import (
    MAIN_BRANCH,
    AgentMessage,
    AgentSession,
    BranchReservation,
    MessageStructure,
    PreferredBranch,
    TurnUsage,
)

#: Turns shown per page of the detail view (latest first; "load earlier" pages back).
TURN_PAGE_SIZE = 25
#: Longest tool argument/output or raw item shown before it is cut (the full JSON is exported).
MAX_TEXT = 20_000
#: Turns of each branch compared side by side after the fork.
COMPARE_LIMIT = 60
SESSIONS_PER_PAGE = 25
SEARCH_LIMIT = 20

SORTS = {
    "title": "title",
    "turns": "turn_count",
    "branches": "branch_count",
    "tokens": "total_tokens",
    "updated": "updated_at",
    "created": "created_at",
}
DEFAULT_SORT = "-updated"


# ---- URLs (ids may hold spaces, slashes, quotes, non-ASCII: always reverse + urlencode) ----


def session_url(session_id: str, branch_id: str | None = None, turn: int | None = None) -> str:
    url = reverse("session_detail", kwargs={"session_id": session_id})
    params: dict[str, Any] = {}
    if branch_id is not None:  # explicit, even for main: without it the preferred branch opens
        params["branch"] = branch_id
    if turn is not None:
        params["turn"] = turn
    query = f"?{urlencode(params)}" if params else ""
    anchor = f"#turn-{turn}" if turn is not None else ""
    return f"{url}{query}{anchor}"


def usage_url(session_id: str, branch_id: str) -> str:
    url = reverse("session_usage", kwargs={"session_id": session_id})
    return f"{url}?{urlencode({'branch': branch_id})}"


def compare_url(session_id: str, a: str, b: str) -> str:
    url = reverse("session_compare", kwargs={"session_id": session_id})
    return f"{url}?{urlencode({'a': a, 'b': b})}"


# ---- Session list ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionListFilters:
    has_branches: bool = False
    tool: str = ""
    updated_from: date | None = None
    updated_to: date | None = None


@dataclass(frozen=True, slots=True)
class SessionRow:
    session_id: str
    title: str
    turns: int
    branches: int
    total_tokens: int
    created_at: datetime | None
    updated_at: datetime | None
    url: str


@dataclass(frozen=True, slots=True)
class SessionListPage:
    rows: tuple[SessionRow, ...]
    number: int
    num_pages: int
    total: int
    sort: str
    tools: tuple[str, ...]

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.num_pages


def _session_annotations() -> dict[str, Any]:
    structure = MessageStructure.objects.filter(session_id=OuterRef("pk"))
    first_user = (
        structure.filter(message_type="user")
        .order_by("sequence_number")
        .annotate(text=KeyTextTransform("content", "message__message_data"))
        .values("text")[:1]
    )
    turns = (
        structure.filter(message_type="user")
        .order_by()
        .values("session_id")
        .annotate(n=Count("message_id", distinct=True))
        .values("n")
    )
    branches = (
        structure.order_by()
        .values("session_id")
        .annotate(n=Count("branch_id", distinct=True))
        .values("n")
    )
    tokens = (
        TurnUsage.objects.filter(session_id=OuterRef("pk"))
        .order_by()
        .values("session_id")
        .annotate(n=Sum("total_tokens"))
        .values("n")
    )
    return {
        "title": Subquery(first_user, output_field=TextField()),
        "turn_count": Coalesce(Subquery(turns, output_field=IntegerField()), Value(0)),
        "branch_count": Coalesce(Subquery(branches, output_field=IntegerField()), Value(0)),
        "total_tokens": Coalesce(Subquery(tokens, output_field=IntegerField()), Value(0)),
    }


def _title(raw: Any) -> str:
    """The first user message as one line of text (string or list-of-parts content)."""
    if raw is None:
        return ""
    text = raw if isinstance(raw, str) else json.dumps(raw)
    if text.startswith("["):
        try:
            text = _content_text(json.loads(text))
        except (ValueError, RecursionError):
            pass
    text = " ".join(text.split())
    return text[:140] + ("…" if len(text) > 140 else "")


def session_list(
    *,
    filters: SessionListFilters | None = None,
    sort: str = DEFAULT_SORT,
    page: int = 1,
    per_page: int = SESSIONS_PER_PAGE,
) -> SessionListPage:
    """One page of the session table: 2 queries (count, page) + 1 for the tool filter options.

    Args:
        filters: Has branches, used tool, last-activity date range.
        sort: A key of :data:`SORTS`, optionally prefixed with ``-``.
        page: 1-based page number (clamped into range).
        per_page: Rows per page.
    """
    filters = filters or SessionListFilters()
    qs = AgentSession.objects.annotate(**_session_annotations())
    if filters.has_branches:
        qs = qs.filter(branch_count__gt=1)
    if filters.tool:
        qs = qs.filter(
            Exists(
                MessageStructure.objects.filter(session_id=OuterRef("pk"), tool_name=filters.tool)
            )
        )
    if filters.updated_from:
        qs = qs.filter(updated_at__date__gte=filters.updated_from)
    if filters.updated_to:
        qs = qs.filter(updated_at__date__lte=filters.updated_to)
    key = sort.lstrip("-")
    if key not in SORTS:
        sort, key = DEFAULT_SORT, DEFAULT_SORT.lstrip("-")
    column = SORTS[key]
    ordering = F(column).desc(nulls_last=True) if sort.startswith("-") else F(column).asc()
    qs = qs.order_by(ordering, "session_id")
    paginator = Paginator(qs, per_page)
    page_obj = paginator.get_page(page)
    rows = tuple(
        SessionRow(
            session_id=s.session_id,
            title=_title(s.title) or "(no user message)",
            turns=s.turn_count,
            branches=s.branch_count,
            total_tokens=s.total_tokens,
            created_at=s.created_at,
            updated_at=s.updated_at,
            url=session_url(s.session_id),
        )
        for s in page_obj.object_list
    )
    return SessionListPage(
        rows=rows,
        number=page_obj.number,
        num_pages=paginator.num_pages,
        total=paginator.count,
        sort=sort,
        tools=tool_names(),
    )


def tool_names() -> tuple[str, ...]:
    """Every tool name used in any session (for the "used tool" filter)."""
    return tuple(
        MessageStructure.objects.exclude(tool_name__isnull=True)
        .exclude(tool_name="")
        .order_by("tool_name")
        .values_list("tool_name", flat=True)
        .distinct()
    )


# ---- Branch tree ----------------------------------------------------------------------------


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
    first_sequence: int
    depth: int
    own_tokens: int
    tokens_since_fork: int
    turns_without_usage: int
    url: str
    children: tuple[str, ...] = ()

    @property
    def turns_since_fork(self) -> int:
        return max(0, self.turns - self.fork_turn + 1)


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
        return self.nodes[branch_id]

    def path(self, branch_id: str) -> tuple[str, ...]:
        """The branch, its parent, ... up to its root."""
        out = []
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


def _summary_rows(session_id: str) -> list[tuple[Any, ...]]:
    """(branch, messages, turns, first sequence number, created) per branch, oldest first.

    Branches come from ``branch_reservations`` (every id ever used; small) plus ``main``,
    and each figure is an index lookup on the (session, branch, ...) composite indexes of
    ``message_structure``, so this never reads every row of a big session the way a
    ``GROUP BY branch_id`` would (the message count is an index-only count). Reserved ids
    with no rows (deleted or ghost branches) are dropped. Raw SQL: the equivalent QuerySet
    with four subqueries per branch costs milliseconds just to compile.
    """
    sql = _SUMMARIES.format(
        ms=connection.ops.quote_name(MessageStructure._meta.db_table),
        br=connection.ops.quote_name(BranchReservation._meta.db_table),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [session_id] * 5 + [MAIN_BRANCH])
        rows = cursor.fetchall()
    out = [
        (branch, messages or 0, turns or 0, first_seq, _as_datetime(created))
        for branch, messages, turns, first_seq, created in rows
        if first_seq is not None
    ]
    out.sort(key=lambda row: row[3])
    return out


def _as_datetime(value: Any) -> datetime | None:
    """A raw ``created_at``: a datetime (PostgreSQL) or the SDK's UTC text (SQLite)."""
    if value is None or isinstance(value, datetime):
        return value
    parsed = parse_datetime(str(value))
    if parsed is not None and is_naive(parsed):
        parsed = make_aware(parsed, UTC)
    return parsed


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
    vendor = connection.vendor
    row = "(CAST(%s AS TEXT), CAST(%s AS TEXT), CAST(%s AS INTEGER))"
    values = ("VALUES " if vendor == "postgresql" else "VALUES ") + ", ".join([row] * len(pairs))
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
        Http404: The session has no rows.
    """
    summaries = _summary_rows(session_id)
    if not summaries:
        raise Http404("No such session")
    order = tuple(row[0] for row in summaries)
    if MAIN_BRANCH in order:  # main is the trunk even if an import wrote it later
        order = (MAIN_BRANCH, *(b for b in order if b != MAIN_BRANCH))
    info = {row[0]: row for row in summaries}

    prefix = _common_prefixes(session_id, {b: info[b][2] for b in order}, order)

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
    for branch in order:
        if parents[branch] is not None:
            children[parents[branch]].append(branch)
    depth: dict[str, int] = {}
    for branch in order:
        parent = parents[branch]
        depth[branch] = 0 if parent is None else depth[parent] + 1
    nodes = {}
    for branch in order:
        _, messages, turns, first_seq, created = info[branch]
        own, since_tokens, since_rows = usage.get(branch, (0, 0, 0))
        since_turns = max(0, turns - forks[branch] + 1)
        nodes[branch] = BranchNode(
            branch_id=branch,
            parent_id=parents[branch],
            fork_turn=forks[branch],
            turns=turns,
            messages=messages,
            created_at=created,
            first_sequence=first_seq,
            depth=depth[branch],
            own_tokens=own,
            tokens_since_fork=since_tokens,
            turns_without_usage=max(0, since_turns - since_rows),
            url=session_url(session_id, branch),
            children=tuple(children[branch]),
        )
    roots = tuple(b for b in order if parents[b] is None)
    return BranchTree(session_id=session_id, nodes=nodes, order=order, roots=roots, prefix=prefix)


# ---- Turns ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call paired with its output by ``call_id`` (hosted tools carry their result)."""

    call_id: str
    name: str
    kind: str  # the item type: function_call, web_search_call, file_search_call, ...
    arguments: str  # pretty JSON (or the raw text if it is not JSON)
    output: str | None  # pretty JSON / text; None while no output was recorded
    status: str


@dataclass(frozen=True, slots=True)
class TurnItem:
    """One thing shown inside a turn. ``kind``: assistant, reasoning, tool, system, other."""

    kind: str
    text: str = ""  # markdown source (assistant), plain text (reasoning, system), JSON (other)
    tool: ToolCall | None = None
    label: str = ""


@dataclass(frozen=True, slots=True)
class TurnUsageView:
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    requests: int
    branch_id: str  # the branch whose row this is (an ancestor for a shared turn)


@dataclass(frozen=True, slots=True)
class Switcher:
    """``< n/m >`` over the sibling branches that diverge at this turn."""

    turn: int
    position: int
    total: int
    branches: tuple[tuple[str, str], ...]  # (branch_id, url), creation order
    previous_url: str | None
    next_url: str | None


@dataclass(frozen=True, slots=True)
class Turn:
    """One user turn of a branch, ready for ``dashboard/partials/_turn.html``.

    Attributes:
        number: The branch turn number (``#turn-<number>`` anchors it).
        session_id, branch_id: Where it is shown.
        user_text: The user's message as text (list content joined).
        items: What followed, in order: assistant text, reasoning, tool calls (with outputs).
        usage: Tokens of the turn, or ``None`` when no ``turn_usage`` row exists.
        shared_with_parent: True if the turn is in a prefix copied from another branch.
        switcher: Sibling branches diverging here, or ``None``.
        url: A stable link to this turn on this branch.
    """

    number: int
    session_id: str
    branch_id: str
    user_text: str
    items: tuple[TurnItem, ...]
    usage: TurnUsageView | None
    shared_with_parent: bool
    switcher: Switcher | None
    url: str
    created_at: datetime | None = None

    @property
    def anchor(self) -> str:
        return f"turn-{self.number}"

    @property
    def assistant_text(self) -> str:
        return "\n\n".join(i.text for i in self.items if i.kind == "assistant")

    @property
    def tool_sequence(self) -> tuple[str, ...]:
        return tuple(i.tool.name for i in self.items if i.tool is not None)


@dataclass(frozen=True, slots=True)
class TurnPage:
    """A window of turns of one branch (latest first by default)."""

    session_id: str
    branch_id: str
    turns: tuple[Turn, ...]
    first: int
    last: int
    total: int
    earlier_url: str | None
    later_url: str | None
    earlier_fragment_url: str | None


@dataclass(frozen=True)
class SessionDetail:
    session_id: str
    branch: BranchNode
    tree: BranchTree
    page: TurnPage
    usage_url: str
    created_at: datetime | None
    updated_at: datetime | None
    #: The branch marked preferred (it opens when no branch is asked for), if it still exists.
    preferred_branch: str | None = None


def _truncate(text: str, limit: int = MAX_TEXT) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… [{len(text) - limit:,} more characters not shown]"


def _pretty(value: Any) -> str:
    """Pretty JSON for display; JSON strings are parsed first; never raises."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return _truncate(value)
        if isinstance(value, str):
            return _truncate(value)
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)[: MAX_TEXT + 1]
    return _truncate(text)


def _content_text(content: Any) -> str:
    """Text of a message's content: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                text = part.get("text") or part.get("refusal")
                if isinstance(text, str):
                    parts.append(text)
                elif part.get("type") in {"input_image", "input_file"}:
                    parts.append(f"[{part.get('type')}]")
            elif isinstance(part, str):
                parts.append(part)
        return "\n\n".join(parts)
    return "" if content is None else str(content)


_OUTPUT_TYPES = {
    "function_call_output",
    "custom_tool_call_output",
    "computer_call_output",
    "local_shell_call_output",
    "shell_call_output",
    "apply_patch_call_output",
    "tool_search_output",
    "mcp_approval_response",
}


def _hosted_result(item: dict[str, Any]) -> str | None:
    for key in ("results", "output", "outputs", "result", "error"):
        if item.get(key) not in (None, [], ""):
            return _pretty(item[key])
    return None


def _build_items(rows: Iterable[tuple[str, str | None, Any]]) -> tuple[str, tuple[TurnItem, ...]]:
    """(user text, items) for one turn's (message_type, tool_name, item) rows in order."""
    user_text = ""
    items: list[TurnItem] = []
    calls: dict[str, int] = {}  # call_id -> index in items
    for message_type, tool_name, item in rows:
        if not isinstance(item, dict):
            items.append(TurnItem(kind="other", text=_pretty(item), label=message_type))
            continue
        item_type = item.get("type")
        if message_type == "user" and not user_text:
            user_text = _truncate(_content_text(item.get("content")))
        elif message_type == "user":
            items.append(
                TurnItem(kind="system", text=_content_text(item.get("content")), label="user")
            )
        elif message_type == "assistant":
            items.append(
                TurnItem(kind="assistant", text=_truncate(_content_text(item.get("content"))))
            )
        elif item_type == "reasoning":
            summary = item.get("summary") or []
            text = "\n\n".join(
                s.get("text", "") for s in summary if isinstance(s, dict) and s.get("text")
            )
            items.append(TurnItem(kind="reasoning", text=_truncate(text) or "(no summary)"))
        elif item_type in _OUTPUT_TYPES:
            call_id = str(item.get("call_id") or "")
            output = _pretty(item.get("output", item.get("approve", "")))
            if call_id in calls:
                old = items[calls[call_id]]
                assert old.tool is not None
                items[calls[call_id]] = TurnItem(
                    kind="tool",
                    tool=ToolCall(
                        call_id=old.tool.call_id,
                        name=old.tool.name,
                        kind=old.tool.kind,
                        arguments=old.tool.arguments,
                        output=output,
                        status=old.tool.status,
                    ),
                )
            else:
                items.append(
                    TurnItem(
                        kind="tool",
                        tool=ToolCall(
                            call_id=call_id,
                            name=tool_name or "(unknown call)",
                            kind=str(item_type),
                            arguments="",
                            output=output,
                            status="orphan output",
                        ),
                    )
                )
        elif tool_name is not None or (isinstance(item_type, str) and item_type.endswith("_call")):
            call_id = str(item.get("call_id") or item.get("id") or "")
            if "arguments" in item:
                arguments = _pretty(item.get("arguments"))
            elif "action" in item:
                arguments = _pretty(item.get("action"))
            elif "queries" in item:
                arguments = _pretty(item.get("queries"))
            elif "input" in item:
                arguments = _pretty(item.get("input"))
            else:
                arguments = ""
            items.append(
                TurnItem(
                    kind="tool",
                    tool=ToolCall(
                        call_id=call_id,
                        name=tool_name or str(item_type),
                        kind=str(item_type),
                        arguments=arguments,
                        output=_hosted_result(item),
                        status=str(item.get("status") or ""),
                    ),
                )
            )
            if call_id:
                calls[call_id] = len(items) - 1
        elif item.get("role") in {"system", "developer"}:
            items.append(
                TurnItem(
                    kind="system",
                    text=_truncate(_content_text(item.get("content"))),
                    label=str(item.get("role")),
                )
            )
        else:
            items.append(TurnItem(kind="other", text=_pretty(item), label=message_type))
    return user_text, tuple(items)


def _decode(value: Any) -> Any:
    if isinstance(value, UndecodableJSON):
        return {"type": "undecodable", "raw": _truncate(str(value), 2000)}
    return value


def _usage_views(
    tree: BranchTree, branch_id: str, first: int, last: int
) -> dict[int, TurnUsageView]:
    """Usage of turns ``first..last`` of a branch, each read from the branch that owns it."""
    condition = Q(pk__in=[])
    for owner in tree.path(branch_id):
        lo = max(first, tree.nodes[owner].fork_turn)
        hi = last
        # The owner's range ends where the next branch down the path forks.
        for below in tree.path(branch_id):
            if below == owner:
                break
            hi = min(hi, tree.nodes[below].fork_turn - 1)
        if lo <= hi:
            condition |= Q(branch_id=owner, user_turn_number__gte=lo, user_turn_number__lte=hi)
    out: dict[int, TurnUsageView] = {}
    rows = (
        TurnUsage.objects.for_session(tree.session_id)
        .filter(condition)
        .values_list(
            "branch_id",
            "user_turn_number",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "requests",
            "input_tokens_details",
            "output_tokens_details",
        )
    )
    for owner, turn, inp, outp, total, requests, in_details, out_details in rows:
        if tree.owner(branch_id, turn) != owner:
            continue
        out[turn] = TurnUsageView(
            input_tokens=inp or 0,
            output_tokens=outp or 0,
            total_tokens=total or 0,
            cached_tokens=_detail(in_details, "cached_tokens"),
            reasoning_tokens=_detail(out_details, "reasoning_tokens"),
            requests=requests or 0,
            branch_id=owner,
        )
    return out


def _raw_json(value: Any) -> Any:
    """A details column read raw: decoded already (psycopg) or JSON text (SQLite)."""
    if isinstance(value, str | bytes):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    return value


def _detail(details: Any, key: str) -> int:
    if isinstance(details, dict):
        value = details.get(key)
        if isinstance(value, int):
            return value
    return 0


def _switcher(tree: BranchTree, branch_id: str, turn: int, siblings: Sequence[str]) -> Switcher:
    index = siblings.index(branch_id)
    urls = tuple((b, session_url(tree.session_id, b, turn)) for b in siblings)
    return Switcher(
        turn=turn,
        position=index + 1,
        total=len(siblings),
        branches=urls,
        previous_url=urls[index - 1][1] if index > 0 else None,
        next_url=urls[index + 1][1] if index + 1 < len(urls) else None,
    )


def turns_get(*, tree: BranchTree, branch_id: str, first: int, last: int) -> tuple[Turn, ...]:
    """Turns ``first..last`` of a branch, rendered-ready: 2 queries (items, usage).

    Items before the first user message (turn 0) are shown with turn 1.
    """
    if last < first:
        return ()
    lo = 0 if first <= 1 else first
    rows = (
        MessageStructure.objects.for_session(tree.session_id)
        .on_branch(branch_id)
        .filter(user_turn_number__gte=lo, user_turn_number__lte=last)
        .order_by("sequence_number")
        .values_list(
            "user_turn_number", "message_type", "tool_name", "created_at", "message__message_data"
        )
    )
    by_turn: dict[int, list[tuple[str, str | None, Any]]] = {}
    created: dict[int, datetime | None] = {}
    for turn, message_type, tool_name, created_at, data in rows:
        turn = max(turn or 0, 1)
        by_turn.setdefault(turn, []).append((message_type, tool_name, _decode(data)))
        created.setdefault(turn, created_at)
    usage = _usage_views(tree, branch_id, first, last)
    forks = tree.fork_turns(branch_id)
    node = tree.nodes[branch_id]
    turns = []
    for number in range(first, last + 1):
        user_text, items = _build_items(by_turn.get(number, ()))
        siblings = forks.get(number)
        turns.append(
            Turn(
                number=number,
                session_id=tree.session_id,
                branch_id=branch_id,
                user_text=user_text,
                items=items,
                usage=usage.get(number),
                shared_with_parent=number < node.fork_turn,
                switcher=_switcher(tree, branch_id, number, siblings)
                if siblings and len(siblings) > 1
                else None,
                url=session_url(tree.session_id, branch_id, number),
                created_at=created.get(number),
            )
        )
    return tuple(turns)


def _window(total: int, *, start: int | None, turn: int | None, size: int) -> tuple[int, int]:
    if total <= 0:
        return 1, 0
    if turn is not None:
        start = max(1, min(turn - 2, total - size + 1))
    if start is None:
        start = max(1, total - size + 1)
    start = min(max(1, start), total)
    return start, min(total, start + size - 1)


def turn_page_get(
    *,
    tree: BranchTree,
    branch_id: str,
    start: int | None = None,
    turn: int | None = None,
    size: int = TURN_PAGE_SIZE,
) -> TurnPage:
    """A window of turns: the latest ``size`` by default, or from ``start``, or around ``turn``."""
    node = tree.nodes[branch_id]
    first, last = _window(node.turns, start=start, turn=turn, size=size)
    turns = turns_get(tree=tree, branch_id=branch_id, first=first, last=last)
    base = reverse("session_detail", kwargs={"session_id": tree.session_id})
    fragment = reverse("session_turns", kwargs={"session_id": tree.session_id})
    earlier_start = max(1, first - size)
    params = {"branch": branch_id, "start": earlier_start}
    return TurnPage(
        session_id=tree.session_id,
        branch_id=branch_id,
        turns=turns,
        first=first,
        last=last,
        total=node.turns,
        earlier_url=f"{base}?{urlencode(params)}" if first > 1 else None,
        later_url=(
            f"{base}?{urlencode({'branch': branch_id, 'start': last + 1})}"
            if last < node.turns
            else None
        ),
        earlier_fragment_url=(
            f"{fragment}?{urlencode({**params, 'end': first - 1})}" if first > 1 else None
        ),
    )


def session_detail_get(
    *,
    session_id: str,
    branch_id: str | None = None,
    start: int | None = None,
    turn: int | None = None,
) -> SessionDetail:
    """Everything the session page shows (about 6 queries, whatever the session's size).

    ``branch_id=None`` shows the session's preferred branch, or ``main`` if none is marked.

    Raises:
        Http404: Unknown session or branch.
    """
    preferred = PreferredBranch.objects.filter(session_id=OuterRef("pk")).values("branch_id")
    session = (
        AgentSession.objects.filter(session_id=session_id)
        .annotate(preferred=Subquery(preferred[:1]))
        .values_list("created_at", "updated_at", "preferred")
        .first()
    )
    if session is None:
        raise Http404("No such session")
    tree = branch_tree_get(session_id=session_id)
    preferred_branch = session[2] if session[2] in tree else None
    if branch_id is None:
        branch_id = preferred_branch or MAIN_BRANCH
    if branch_id not in tree:
        raise Http404("No such branch")
    page = turn_page_get(tree=tree, branch_id=branch_id, start=start, turn=turn)
    return SessionDetail(
        session_id=session_id,
        branch=tree.node(branch_id),
        tree=tree,
        page=page,
        usage_url=usage_url(session_id, branch_id),
        created_at=session[0],
        updated_at=session[1],
        preferred_branch=preferred_branch,
    )


def turn_fragment_get(*, session_id: str, branch_id: str, start: int, end: int) -> TurnPage:
    """Turns ``start..end`` only (the "load earlier" fragment)."""
    tree = branch_tree_get(session_id=session_id)
    if branch_id not in tree:
        raise Http404("No such branch")
    size = max(0, min(end, tree.nodes[branch_id].turns) - start + 1)
    return turn_page_get(tree=tree, branch_id=branch_id, start=start, size=min(size, 200))


# ---- Usage series (the charts' JSON twin) ----------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class CumulativeLine:
    branch_id: str
    fork_turn: int
    points: tuple[tuple[int, int], ...]  # (turn, cumulative tokens), from fork_turn - 1 on
    current: bool


@dataclass(frozen=True)
class UsageSeries:
    session_id: str
    branch_id: str
    per_turn: tuple[UsagePoint, ...]
    cumulative: tuple[CumulativeLine, ...]
    branch_tokens: int  # tokens along the whole path of this branch (shared prefix included)
    missing_turns: tuple[int, ...]
    tool_calls: tuple[tuple[int, str, int], ...] = ()  # (turn, tool, calls) on this branch

    def as_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "branch": self.branch_id,
            "path_total_tokens": self.branch_tokens,
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
                }
                for p in self.per_turn
            ],
            "cumulative": [
                {
                    "branch": line.branch_id,
                    "fork_turn": line.fork_turn,
                    "current": line.current,
                    "points": [{"turn": t, "tokens": v} for t, v in line.points],
                }
                for line in self.cumulative
            ],
            "tool_calls": [
                {"turn": turn, "tool": tool, "calls": calls}
                for turn, tool, calls in self.tool_calls
            ],
        }


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
    """Per-turn usage and tool calls of a branch, cumulative lines for every branch: 5 queries.

    A branch's cumulative line counts its shared prefix (the owners' rows) and starts at
    its fork turn, so the lines of all branches meet where they diverge.
    """
    tree = branch_tree_get(session_id=session_id)
    if branch_id not in tree:
        raise Http404("No such branch")
    rows: dict[tuple[str, int], tuple[int, int, int, int, int]] = {}
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
                _detail(_raw_json(in_d), "cached_tokens"),
                _detail(_raw_json(out_d), "reasoning_tokens"),
            )

    def series(branch: str) -> list[tuple[int, tuple[int, ...] | None, str]]:
        # Walk the path root-first: each ancestor owns the turns up to its child's fork.
        out = []
        path = tree.path(branch)[::-1]
        last = tree.nodes[branch].turns
        for index, owner in enumerate(path):
            start = max(1, tree.nodes[owner].fork_turn) if index else 1
            end = tree.nodes[path[index + 1]].fork_turn - 1 if index + 1 < len(path) else last
            get = rows.get
            out.extend((turn, get((owner, turn)), owner) for turn in range(start, end + 1))
        return out

    per_turn = []
    missing = []
    for turn, values, owner in series(branch_id):
        if values is None:
            missing.append(turn)
            per_turn.append(UsagePoint(turn, None, None, None, None, None, None, True))
        else:
            per_turn.append(UsagePoint(turn, *values, owner=owner, missing=False))
    lines = []
    path_total = 0
    for branch in tree.order:
        node = tree.nodes[branch]
        cumulative = 0
        points = []
        for turn, values, _ in series(branch):
            cumulative += values[2] if values else 0
            if turn >= node.fork_turn - 1:
                points.append((turn, cumulative))
        if branch == branch_id:
            path_total = cumulative
        lines.append(
            CumulativeLine(branch, node.fork_turn, tuple(points), current=branch == branch_id)
        )
    return UsageSeries(
        session_id=session_id,
        branch_id=branch_id,
        per_turn=tuple(per_turn),
        cumulative=tuple(lines),
        branch_tokens=path_total,
        missing_turns=tuple(missing),
        tool_calls=_tool_calls(session_id, branch_id),
    )


# ---- Search ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A message that matches, where it lives, and a highlighted snippet (safe HTML)."""

    session_id: str
    message_id: int
    branch_id: str
    turn: int
    role: str
    snippet_html: str
    branches: tuple[str, ...]
    url: str

    @property
    def shared(self) -> bool:
        return len(self.branches) > 1


def _item_text(item: Any) -> str:
    """The searchable text of an item: content, reasoning, tool arguments and outputs."""
    if not isinstance(item, dict):
        return str(item)
    parts = [_content_text(item.get("content"))]
    for s in item.get("summary") or []:
        if isinstance(s, dict) and isinstance(s.get("text"), str):
            parts.append(s["text"])
    for key in ("arguments", "output", "name", "query"):
        value = item.get(key)
        if isinstance(value, str):
            parts.append(value)
        elif value is not None:
            parts.append(json.dumps(value, ensure_ascii=False))
    action = item.get("action")
    if isinstance(action, dict) and isinstance(action.get("query"), str):
        parts.append(action["query"])
    return "\n".join(p for p in parts if p)


def _terms(query: str) -> list[str]:
    return [t for t in re.findall(r"\w[\w'-]*", query.lower()) if len(t) > 1] or (
        [query.lower().strip()] if query.strip() else []
    )


def _snippet(text: str, terms: Sequence[str], width: int = 90) -> str:
    lowered = text.lower()
    positions = [lowered.find(t) for t in terms if lowered.find(t) >= 0]
    center = min(positions) if positions else 0
    start = max(0, center - width)
    end = min(len(text), center + width)
    window = " ".join(text[start:end].split())
    if not terms:
        return escape(window)
    pattern = re.compile("|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)), re.I)
    out, last = [], 0
    for m in pattern.finditer(window):
        out.append(html.escape(window[last : m.start()]))
        out.append(f"<mark>{html.escape(m.group(0))}</mark>")
        last = m.end()
    out.append(html.escape(window[last:]))
    prefix = "… " if start > 0 else ""
    suffix = " …" if end < len(text) else ""
    return prefix + "".join(out) + suffix


def search_hits(*, query: str, limit: int = SEARCH_LIMIT) -> tuple[SearchHit, ...]:
    """Messages matching ``query`` in any session: 2 queries.

    PostgreSQL: full-text search (``websearch`` syntax, English stemming, GIN-indexed).
    SQLite: case-insensitive substring over the stored JSON text, re-checked on the item's
    text (so keys such as ``"role"`` never match).
    """
    query = query.strip()[:200]
    if not query:
        return ()
    terms = _terms(query)
    messages = AgentMessage.objects.all()
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

        vector = SearchVector(Cast("message_data", TextField()), config="english")
        search = SearchQuery(query, config="english", search_type="websearch")
        candidates = list(
            messages.annotate(document=vector)
            .filter(document=search)
            .annotate(rank=SearchRank(vector, search))
            .order_by("-rank", "-id")
            .values_list("id", "session_id", "message_data")[: limit * 3]
        )
        strict = False
    else:
        text = Cast("message_data", TextField())
        # SQLite keeps the SDK's json.dumps text, where non-ASCII is \\u-escaped.
        escaped = json.dumps(query)[1:-1]
        condition = Q(doc__icontains=query)
        if escaped != query:
            condition |= Q(doc__icontains=escaped)
        candidates = list(
            messages.annotate(doc=text)
            .filter(condition)
            .order_by("-id")
            .values_list("id", "session_id", "message_data")[: limit * 5]
        )
        strict = True
    picked = []
    for message_id, session_id, data in candidates:
        text = _item_text(_decode(data))
        lowered = text.lower()
        if strict and query.lower() not in lowered:
            continue
        # Full-text search also indexes the JSON keys ("role", "type"): keep a hit only if
        # one of the query's words (or its stem-like prefix) is in the item's own text.
        if not strict and not any(t[: max(3, len(t) - 2)] in lowered for t in terms):
            continue
        picked.append((message_id, session_id, data, text))
        if len(picked) >= limit:
            break
    if not picked:
        return ()
    placements: dict[int, list[tuple[int, str, int | None, str]]] = {}
    for message_id, seq, branch, turn, mtype in MessageStructure.objects.filter(
        message_id__in=[p[0] for p in picked]
    ).values_list("message_id", "sequence_number", "branch_id", "user_turn_number", "message_type"):
        placements.setdefault(message_id, []).append((seq, branch, turn, mtype))
    hits = []
    for message_id, session_id, _data, text in picked:
        places = sorted(placements.get(message_id, []))
        if not places:
            continue
        _, branch, turn, mtype = places[0]  # where it was first written
        turn = max(turn or 0, 1)
        branches = tuple(dict.fromkeys(p[1] for p in places))
        hits.append(
            SearchHit(
                session_id=session_id,
                message_id=message_id,
                branch_id=branch,
                turn=turn,
                role=mtype,
                snippet_html=_snippet(text, terms),
                branches=branches,
                url=session_url(session_id, branch, turn),
            )
        )
    return tuple(hits)


# ---- Branch compare -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompareRow:
    turn: int
    left: Turn | None
    right: Turn | None
    left_diff_html: str
    right_diff_html: str
    tools_left: tuple[str, ...]
    tools_right: tuple[str, ...]
    token_delta: int | None  # right - left, when both have usage

    @property
    def tools_differ(self) -> bool:
        return self.tools_left != self.tools_right

    @property
    def text_differs(self) -> bool:
        return (self.left.assistant_text if self.left else "") != (
            self.right.assistant_text if self.right else ""
        )


@dataclass(frozen=True)
class BranchCompare:
    session_id: str
    a: BranchNode
    b: BranchNode
    fork_turn: int
    rows: tuple[CompareRow, ...]
    tokens_a: int
    tokens_b: int
    truncated: bool
    branches: tuple[str, ...]

    @property
    def token_delta(self) -> int:
        return self.tokens_b - self.tokens_a


def _diff_html(a: str, b: str) -> tuple[str, str]:
    """Word-level diff of two texts as (left, right) escaped HTML with <del>/<ins> marks."""
    wa, wb = re.split(r"(\s+)", a), re.split(r"(\s+)", b)
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, wa, wb, autojunk=False).get_opcodes():
        sa, sb = html.escape("".join(wa[i1:i2])), html.escape("".join(wb[j1:j2]))
        if op == "equal":
            left.append(sa)
            right.append(sb)
        else:
            if sa:
                left.append(f"<del>{sa}</del>")
            if sb:
                right.append(f"<ins>{sb}</ins>")
    return "".join(left), "".join(right)


def branch_compare_get(
    *, session_id: str, a: str, b: str, limit: int = COMPARE_LIMIT
) -> BranchCompare:
    """Two branches aligned turn by turn from their fork: about 7 queries.

    Raises:
        Http404: Unknown session or branch.
    """
    tree = branch_tree_get(session_id=session_id)
    if a not in tree or b not in tree:
        raise Http404("No such branch")
    fork = tree.common_prefix(a, b) + 1
    na, nb = tree.nodes[a], tree.nodes[b]
    last = max(na.turns, nb.turns)
    end = min(last, fork + limit - 1)
    left = {
        t.number: t for t in turns_get(tree=tree, branch_id=a, first=fork, last=min(end, na.turns))
    }
    right = {
        t.number: t for t in turns_get(tree=tree, branch_id=b, first=fork, last=min(end, nb.turns))
    }
    rows = []
    tokens_a = tokens_b = 0
    for turn in range(fork, end + 1):
        lt, rt = left.get(turn), right.get(turn)
        lh, rh = _diff_html(lt.assistant_text if lt else "", rt.assistant_text if rt else "")
        if lt and lt.usage:
            tokens_a += lt.usage.total_tokens
        if rt and rt.usage:
            tokens_b += rt.usage.total_tokens
        delta = (
            rt.usage.total_tokens - lt.usage.total_tokens
            if lt and rt and lt.usage and rt.usage
            else None
        )
        rows.append(
            CompareRow(
                turn=turn,
                left=lt,
                right=rt,
                left_diff_html=lh,
                right_diff_html=rh,
                tools_left=lt.tool_sequence if lt else (),
                tools_right=rt.tool_sequence if rt else (),
                token_delta=delta,
            )
        )
    return BranchCompare(
        session_id=session_id,
        a=na,
        b=nb,
        fork_turn=fork,
        rows=tuple(rows),
        tokens_a=tokens_a,
        tokens_b=tokens_b,
        truncated=end < last,
        branches=tree.order,
    )
