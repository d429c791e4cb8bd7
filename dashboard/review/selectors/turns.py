"""A branch turn by turn: the turns of a window, the page of turns, and the session page.

Every read runs a fixed number of queries whatever the size of the session, and the work done
in Python is bounded by what the page shows (one page of turns). Item text, JSON and pretty
forms come from ``conversations.items``; only display truncation is added here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import OuterRef, Q, Subquery

from conversations.items import PART_JOINER, content_text, dumps_pretty, is_undecodable
from conversations.models import (
    MAIN_BRANCH,
    AgentSession,
    MessageStructure,
    PreferredBranch,
    TurnUsage,
)
from dashboard.links import session_url, turns_url, usage_url

from .errors import SessionNotFound
from .tree import BranchNode, BranchTree, branch_tree_get
from .usage import token_detail

__all__ = [
    "MAX_TEXT",
    "TURN_PAGE_SIZE",
    "SessionDetail",
    "Switcher",
    "ToolCall",
    "Turn",
    "TurnItem",
    "TurnPage",
    "TurnUsageView",
    "session_detail_get",
    "turn_fragment_get",
    "turn_page_get",
    "turns_get",
]

#: Turns shown per page of the detail view (latest first; "load earlier" pages back).
TURN_PAGE_SIZE = 25
#: Longest tool argument/output or raw item shown before it is cut (the full JSON is exported).
MAX_TEXT = 20_000
#: Longest undecodable stored text shown in its placeholder item.
MAX_UNDECODABLE = 2000
#: Most turns one "load earlier" fragment returns.
MAX_FRAGMENT_TURNS = 200


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
        return PART_JOINER.join(i.text for i in self.items if i.kind == "assistant")

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


# ---- Items as shown ---------------------------------------------------------------------------


def _truncate(text: str, limit: int = MAX_TEXT) -> str:
    """Display only: long text cut with a note of how much is not shown."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… [{len(text) - limit:,} more characters not shown]"


def _pretty(value: Any) -> str:
    return _truncate(dumps_pretty(value))


def _shown(value: Any) -> Any:
    """A stored item as the page shows it (undecodable text: a placeholder carrying it)."""
    if is_undecodable(value):
        return {"type": "undecodable", "raw": _truncate(str(value), MAX_UNDECODABLE)}
    return value


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


def _call_arguments(item: dict[str, Any]) -> str:
    for key in ("arguments", "action", "queries", "input"):
        if key in item:
            return _pretty(item.get(key))
    return ""


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
            user_text = _truncate(content_text(item.get("content")))
        elif message_type == "user":
            items.append(
                TurnItem(kind="system", text=content_text(item.get("content")), label="user")
            )
        elif message_type == "assistant":
            items.append(
                TurnItem(kind="assistant", text=_truncate(content_text(item.get("content"))))
            )
        elif item_type == "reasoning":
            text = content_text(item.get("summary"))
            items.append(TurnItem(kind="reasoning", text=_truncate(text) or "(no summary)"))
        elif item_type in _OUTPUT_TYPES:
            call_id = str(item.get("call_id") or "")
            output = _pretty(item.get("output", item.get("approve", "")))
            if call_id in calls:
                old = items[calls[call_id]].tool
                assert old is not None
                items[calls[call_id]] = TurnItem(
                    kind="tool",
                    tool=ToolCall(
                        call_id=old.call_id,
                        name=old.name,
                        kind=old.kind,
                        arguments=old.arguments,
                        output=output,
                        status=old.status,
                    ),
                )
            else:
                orphan = ToolCall(
                    call_id=call_id,
                    name=tool_name or "(unknown call)",
                    kind=str(item_type),
                    arguments="",
                    output=output,
                    status="orphan output",
                )
                items.append(TurnItem(kind="tool", tool=orphan))
        elif tool_name is not None or (isinstance(item_type, str) and item_type.endswith("_call")):
            call_id = str(item.get("call_id") or item.get("id") or "")
            call = ToolCall(
                call_id=call_id,
                name=tool_name or str(item_type),
                kind=str(item_type),
                arguments=_call_arguments(item),
                output=_hosted_result(item),
                status=str(item.get("status") or ""),
            )
            items.append(TurnItem(kind="tool", tool=call))
            if call_id:
                calls[call_id] = len(items) - 1
        elif item.get("role") in {"system", "developer"}:
            items.append(
                TurnItem(
                    kind="system",
                    text=_truncate(content_text(item.get("content"))),
                    label=str(item.get("role")),
                )
            )
        else:
            items.append(TurnItem(kind="other", text=_pretty(item), label=message_type))
    return user_text, tuple(items)


# ---- Reads ------------------------------------------------------------------------------------


def _usage_views(
    tree: BranchTree, branch_id: str, first: int, last: int
) -> dict[int, TurnUsageView]:
    """Usage of turns ``first..last`` of a branch, each read from the branch that owns it."""
    condition = Q(pk__in=[])
    path = tree.path(branch_id)
    for owner in path:
        lo = max(first, tree.nodes[owner].fork_turn)
        hi = last
        # The owner's range ends where the next branch down the path forks.
        for below in path:
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
            cached_tokens=token_detail(in_details, "cached_tokens"),
            reasoning_tokens=token_detail(out_details, "reasoning_tokens"),
            requests=requests or 0,
            branch_id=owner,
        )
    return out


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

    Raises:
        BranchNotFound: The branch has no rows.
    """
    node = tree.node(branch_id)
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
        by_turn.setdefault(turn, []).append((message_type, tool_name, _shown(data)))
        created.setdefault(turn, created_at)
    usage = _usage_views(tree, branch_id, first, last)
    forks = tree.fork_turns(branch_id)
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
    """A window of turns: the latest ``size`` by default, or from ``start``, or around ``turn``.

    Raises:
        BranchNotFound: The branch has no rows.
    """
    node = tree.node(branch_id)
    first, last = _window(node.turns, start=start, turn=turn, size=size)
    session_id = tree.session_id
    earlier_start = max(1, first - size)
    return TurnPage(
        session_id=session_id,
        branch_id=branch_id,
        turns=turns_get(tree=tree, branch_id=branch_id, first=first, last=last),
        first=first,
        last=last,
        total=node.turns,
        earlier_url=session_url(session_id, branch_id, start=earlier_start) if first > 1 else None,
        later_url=session_url(session_id, branch_id, start=last + 1) if last < node.turns else None,
        earlier_fragment_url=(
            turns_url(session_id, branch_id, start=earlier_start, end=first - 1)
            if first > 1
            else None
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
        SessionNotFound: Unknown session, or one without rows.
        BranchNotFound: The branch has no rows in the session.
    """
    preferred = PreferredBranch.objects.filter(session_id=OuterRef("pk")).values("branch_id")
    session = (
        AgentSession.objects.filter(session_id=session_id)
        .annotate(preferred=Subquery(preferred[:1]))
        .values_list("created_at", "updated_at", "preferred")
        .first()
    )
    if session is None:
        raise SessionNotFound(session_id)
    created_at, updated_at, marked = session
    tree = branch_tree_get(session_id=session_id)
    preferred_branch = marked if marked in tree else None
    if branch_id is None:
        branch_id = preferred_branch or MAIN_BRANCH
    branch = tree.node(branch_id)
    return SessionDetail(
        session_id=session_id,
        branch=branch,
        tree=tree,
        page=turn_page_get(tree=tree, branch_id=branch_id, start=start, turn=turn),
        usage_url=usage_url(session_id, branch_id),
        created_at=created_at,
        updated_at=updated_at,
        preferred_branch=preferred_branch,
    )


def turn_fragment_get(*, session_id: str, branch_id: str, start: int, end: int) -> TurnPage:
    """Turns ``start..end`` only (the "load earlier" fragment).

    Raises:
        SessionNotFound: The session has no rows.
        BranchNotFound: The branch has no rows.
    """
    tree = branch_tree_get(session_id=session_id)
    size = max(0, min(end, tree.node(branch_id).turns) - start + 1)
    return turn_page_get(
        tree=tree, branch_id=branch_id, start=start, size=min(size, MAX_FRAGMENT_TURNS)
    )
