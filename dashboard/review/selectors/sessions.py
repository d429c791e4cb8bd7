"""The session table: one page of sessions, sorted and filtered, and the tool filter's options.

Every figure of a row (title, turns, branches, tokens) is a correlated subquery on an index,
so a page costs the same whatever the number of sessions: 3 queries (count, page, tools).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

from django.core.paginator import Paginator
from django.db.models import (
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    TextField,
    Value,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce

from conversations.items import DecodeError, content_text, decode, one_line
from conversations.models import AgentSession, MessageStructure, TurnUsage
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
    "title": "title",
    "turns": "turn_count",
    "branches": "branch_count",
    "tokens": "total_tokens",
    "updated": "updated_at",
    "created": "created_at",
}
DEFAULT_SORT = "-updated"


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


def _branch_count() -> Subquery:
    return Subquery(
        MessageStructure.objects.filter(session_id=OuterRef("pk"))
        .order_by()
        .values("session_id")
        .annotate(n=Count("branch_id", distinct=True))
        .values("n"),
        output_field=IntegerField(),
    )


def _filtered(qs: QuerySet[AgentSession], filters: SessionListFilters) -> QuerySet[AgentSession]:
    """``qs`` narrowed to what ``filters`` select (the one definition of each filter)."""
    if filters.has_branches:
        if "branch_count" not in qs.query.annotations:  # the list has it already
            qs = qs.alias(branch_count=Coalesce(_branch_count(), Value(0)))
        qs = qs.filter(Q(branch_count__gt=1))  # an annotation: the stubs cannot see it
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
    return qs


def session_ids(filters: SessionListFilters) -> QuerySet[AgentSession, str] | None:
    """The ids of the sessions ``filters`` select, as a subquery (``None``: no filter, all)."""
    if filters == SessionListFilters():
        return None
    return _filtered(AgentSession.objects.all(), filters).values_list("session_id", flat=True)


def _sessions(filters: SessionListFilters) -> QuerySet[AgentSession, _Row]:
    """The sessions ``filters`` select, as rows with their title, turn, branch and token
    figures (one correlated subquery each)."""
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
    tokens = (
        TurnUsage.objects.filter(session_id=OuterRef("pk"))
        .order_by()
        .values("session_id")
        .annotate(n=Sum("total_tokens"))
        .values("n")
    )
    qs = AgentSession.objects.annotate(
        title=Subquery(first_user, output_field=TextField()),
        turn_count=Coalesce(Subquery(turns, output_field=IntegerField()), Value(0)),
        branch_count=Coalesce(_branch_count(), Value(0)),
        total_tokens=Coalesce(Subquery(tokens, output_field=IntegerField()), Value(0)),
    )
    return _filtered(qs, filters).values_list(*_Row._fields, named=True)


class _Row(NamedTuple):
    session_id: str
    title: str | None
    turn_count: int
    branch_count: int
    total_tokens: int
    created_at: datetime | None
    updated_at: datetime | None


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
    qs = _sessions(filters or SessionListFilters())
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
    names = (
        MessageStructure.objects.exclude(tool_name__isnull=True)
        .exclude(tool_name="")
        .order_by("tool_name")
        .values_list("tool_name", flat=True)
        .distinct()
    )
    return tuple(name for name in names if name is not None)
