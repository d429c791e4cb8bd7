"""The session table: one page of sessions, sorted and filtered, and the tool filter's options.

Every figure comes from Forkview's summary tables (``conversations/summaries.py``), which
database triggers keep exact for every writer (Forkview, the SDK's own session classes, plain
SQL). A page costs the same whatever the number of sessions: its rows are an index walk in
the sort's order (each sort key has an index; the session id breaks ties in the same
direction), the total is a sum over at most a few hundred ``forkview_list_counts`` rows (exact
for every combination of filters), and the tool options are ``forkview_tools``. 4 queries:
count, page, titles, tools.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db.models import F, Func, Q, QuerySet, Sum, Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import StrIndex

from conversations.items import DecodeError, content_text, decode, one_line
from conversations.models import AgentMessage, ListCount, SessionSummary, SessionTool, ToolSessions
from dashboard.links import session_url

__all__ = [
    "DEFAULT_SORT",
    "SESSIONS_PER_PAGE",
    "SORTS",
    "SessionListFilters",
    "SessionListPage",
    "SessionRow",
    "session_ids",
    "session_list",
    "tool_names",
]

SESSIONS_PER_PAGE = 25
#: Longest title shown (the first user message, folded to one line).
TITLE_LENGTH = 140

SORTS = {
    "title": "title_key",
    "turns": "turn_count",
    "branches": "branch_count",
    "tokens": "total_tokens",
    "updated": "updated_at",
    "created": "created_at",
}
DEFAULT_SORT = "-updated"


def _query_date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class SessionListFilters:
    has_branches: bool = False
    tool: str = ""
    updated_from: date | None = None
    updated_to: date | None = None

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> SessionListFilters:
        """The filters of a query string (the list page's and the API's parameters: ``branched=1``,
        ``tool``, ``from`` and ``to`` as ISO dates); what does not parse is ignored."""
        return cls(
            has_branches=params.get("branched") == "1",
            tool=(params.get("tool") or "")[:200],
            updated_from=_query_date(params.get("from")),
            updated_to=_query_date(params.get("to")),
        )


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


#: A selection of fewer sessions than this is read through its filters' own index and
#: sorted; a broader one walks the sort's index until the page is full (at most about
#: ``per_page * all / FEW`` rows). Either way a page reads a bounded number of rows.
FEW = 2000


class _Unindexed(Func):
    """``+column`` on SQLite: the same value, but the planner leaves the column's index alone
    (SQLite plans without statistics unless ANALYZE ran; the selector knows the exact counts,
    so it chooses). PostgreSQL plans from its own statistics: the column as it is."""

    template = "+%(expressions)s"

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return compiler.compile(self.source_expressions[0])


def _dates(filters: SessionListFilters) -> dict[str, str]:
    """The date filters as lookups on a ``day`` column (``YYYY-MM-DD`` text, UTC)."""
    out = {}
    if filters.updated_from:
        out["__gte"] = filters.updated_from.isoformat()
    if filters.updated_to:
        out["__lte"] = filters.updated_to.isoformat()
    if out:
        out["__gt"] = ""  # no updated_at: never in a date range
    return out


def _filtered(
    qs: QuerySet[SessionSummary], filters: SessionListFilters, *, few: bool = False
) -> QuerySet[SessionSummary]:
    """``qs`` narrowed to what ``filters`` select: the one definition of each filter (the
    count in :func:`_counts` is the same selection, summed from ``forkview_list_counts``).

    ``few``: the filters select few sessions; look them up through the filters' indexes
    (otherwise the filters are checked row by row along the sort's index).
    """
    dates = _dates(filters)
    if filters.updated_from:  # the same range on updated_at itself: an index range for the
        start = datetime.combine(filters.updated_from, time(), UTC)  # "last activity" sort
        qs = qs.filter(updated_at__gte=start)
    if filters.updated_to:
        end = datetime.combine(filters.updated_to + timedelta(days=1), time(), UTC)
        qs = qs.filter(updated_at__lt=end)
    if few:
        where: dict[str, Any] = {f"day{op}": value for op, value in dates.items()}
        if filters.has_branches:
            where["branched"] = 1
        elif dates:
            where["branched__in"] = [0, 1]  # a range on (branched, day)
        if filters.tool:
            tools = SessionTool.objects.filter(tool_name=filters.tool, **where)
            return qs.filter(session_id__in=tools.values("session_id"))
        return qs.filter(**where)
    if filters.has_branches:
        qs = qs.alias(_branched=_Unindexed(F("branched"))).filter(_branched=1)
    if dates:
        qs = qs.alias(_day=_Unindexed(F("day"))).filter(
            **{f"_day{op}": value for op, value in dates.items()}
        )
    if filters.tool:  # a substring check on the row the walk has in hand (no look-up)
        qs = qs.alias(_tool=StrIndex("tools", Value(_tool_token(filters.tool)))).filter(_tool__gt=0)
    return qs


def _tool_token(name: str) -> str:
    """``name``'s token in ``SessionSummary.tools`` (``summaries.tool_token``, in Python)."""
    return f"|{name.encode('utf-8', 'surrogatepass').hex().upper()}|"


def _counts(filters: SessionListFilters) -> tuple[int, int]:
    """(sessions ``filters`` select, all sessions), exact, in one query over
    ``forkview_list_counts``."""
    selected = Q(tool=filters.tool)
    if filters.has_branches:
        selected &= Q(branched=1)
    for op, value in _dates(filters).items():
        selected &= Q(**{f"day{op}": value})
    counts = ListCount.objects.filter(tool__in={"", filters.tool}).aggregate(
        selected=Sum("n", filter=selected), every=Sum("n", filter=Q(tool=""))
    )
    return int(counts["selected"] or 0), int(counts["every"] or 0)


def session_ids(filters: SessionListFilters) -> QuerySet[SessionSummary, str] | None:
    """The ids of the sessions ``filters`` select, as a subquery (``None``: no filter, all)."""
    if filters == SessionListFilters():
        return None
    return _filtered(SessionSummary.objects.all(), filters).values_list("session_id", flat=True)


def _title(raw: Any) -> str:
    """The first user message's ``content`` (its JSON text when a list) as one line."""
    if raw is None:
        return ""
    content: Any = raw
    if isinstance(raw, str) and raw.startswith("["):
        try:
            content = decode(raw)
        except DecodeError:
            content = raw
    text = one_line(content_text(content))
    return text[:TITLE_LENGTH] + ("…" if len(text) > TITLE_LENGTH else "")


def _titles(message_ids: list[int]) -> dict[int, Any]:
    """The ``content`` of each first user message, by message id (one query)."""
    if not message_ids:
        return {}
    rows = (
        AgentMessage.objects.filter(id__in=message_ids)
        .annotate(text=KeyTextTransform("content", "message_data"))
        .values_list("id", "text")
    )
    return dict(rows)


def session_list(
    *,
    filters: SessionListFilters | None = None,
    sort: str = DEFAULT_SORT,
    page: int = 1,
    per_page: int = SESSIONS_PER_PAGE,
) -> SessionListPage:
    """One page of the session table: 4 queries (count, page, titles, tool options).

    Args:
        filters: Has branches, used tool, last-activity date range.
        sort: A key of :data:`SORTS`, optionally prefixed with ``-``.
        page: 1-based page number (clamped into range).
        per_page: Rows per page.
    """
    filters = filters or SessionListFilters()
    key = sort.lstrip("-")
    if key not in SORTS:
        sort, key = DEFAULT_SORT, DEFAULT_SORT.lstrip("-")
    column = SORTS[key]
    # Ties broken by the session id in the same direction, and NULL times (possible in the
    # SDK's table) last when descending, first when ascending: each order is one index walk.
    if sort.startswith("-"):
        ordering = [F(column).desc(nulls_last=True), F("session_id").desc()]
    else:
        ordering = [F(column).asc(nulls_first=True), F("session_id").asc()]
    total, every = _counts(filters)
    few = total < min(FEW, every)  # no filter: never "few"
    if few:
        ordering[0] = (
            _Unindexed(F(column)).desc(nulls_last=True)
            if sort.startswith("-")
            else _Unindexed(F(column)).asc(nulls_first=True)
        )
    num_pages = max(1, -(-total // per_page))
    number = min(max(1, page), num_pages)
    start = (number - 1) * per_page
    summaries = list(
        _filtered(SessionSummary.objects.all(), filters, few=few)
        .order_by(*ordering)
        .values_list(
            "session_id",
            "title_message_id",
            "turn_count",
            "branch_count",
            "total_tokens",
            "created_at",
            "updated_at",
            named=True,
        )[start : start + per_page]
    )
    titles = _titles([s.title_message_id for s in summaries if s.title_message_id is not None])
    rows = tuple(
        SessionRow(
            session_id=s.session_id,
            title=_title(titles.get(s.title_message_id or 0)) or "(no user message)",
            turns=s.turn_count,
            branches=s.branch_count,
            total_tokens=s.total_tokens,
            created_at=s.created_at,
            updated_at=s.updated_at,
            url=session_url(s.session_id),
        )
        for s in summaries
    )
    return SessionListPage(
        rows=rows,
        number=number,
        num_pages=num_pages,
        total=total,
        sort=sort,
        tools=tool_names(),
    )


def tool_names() -> tuple[str, ...]:
    """Every tool name used in any session (for the "used tool" filter)."""
    names = (
        ToolSessions.objects.filter(sessions__gt=0)
        .order_by("tool_name")
        .values_list("tool_name", flat=True)
    )
    return tuple(names)
