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

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db.models import Avg, Count, F, Func, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import StrIndex

from conversations.costs import CostTotal, describe, recorded_total, to_nanos
from conversations.items import DecodeError, content_text, decode, one_line
from conversations.models import (
    AgentMessage,
    Annotation,
    AnnotationKind,
    ListCount,
    ReviewStatus,
    ScoreDefinition,
    ScoreKind,
    SessionReview,
    SessionSummary,
    SessionTool,
    ToolSessions,
)
from conversations.permissions import ANNOTATE_CODENAME, APP_LABEL
from dashboard.links import session_url

__all__ = [
    "DEFAULT_SORT",
    "REVIEW_STATUSES",
    "SESSIONS_PER_PAGE",
    "SORTS",
    "ScoreColumn",
    "SessionListFilters",
    "SessionListPage",
    "SessionRow",
    "annotator_names",
    "score_definitions",
    "score_text",
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
    "cost": "cost_nanos",
    "updated": "updated_at",
    "created": "created_at",
}
DEFAULT_SORT = "-updated"
#: The review statuses, as (value, label): the status filter's options.
REVIEW_STATUSES: tuple[tuple[str, str], ...] = tuple(ReviewStatus.choices)


def _query_date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _query_dollars(value: str | None) -> float | None:
    """A dollar amount (``$`` and thousands commas allowed), non-negative, or None."""
    number = _query_number((value or "").strip().lstrip("$").replace(",", ""))
    return number if number is not None and 0 <= number < 1e9 else None


def _query_number(value: str | None) -> float | None:
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


@dataclass(frozen=True, slots=True)
class SessionListFilters:
    has_branches: bool = False
    tool: str = ""
    updated_from: date | None = None
    updated_to: date | None = None
    #: A score definition's name: sessions with a score of it (in the range, if one is given).
    score: str = ""
    score_min: float | None = None
    score_max: float | None = None
    #: Sessions with this tag (on the session, a branch or a turn).
    tag: str = ""
    #: A ``ReviewStatus`` value (``unreviewed`` includes sessions without a review row).
    status: str = ""
    #: A username: the annotation filters count only this person's annotations; alone, the
    #: sessions they annotated.
    annotator: str = ""
    #: Sessions with at least one comment (a comment annotation).
    commented: bool = False
    #: Recorded cost in dollars (the traces' model calls): at least / at most.
    cost_min: float | None = None
    cost_max: float | None = None

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> SessionListFilters:
        """The filters of a query string (the list page's and the API's parameters: ``branched=1``,
        ``tool``, ``from`` and ``to`` as ISO dates, ``score`` (a definition's name) with
        ``score_min`` / ``score_max``, ``tag``, ``status``, ``annotator`` (a username),
        ``commented=1``, ``cost_min`` / ``cost_max`` in dollars); what does not parse is
        ignored."""
        status = params.get("status") or ""
        score = (params.get("score") or "")[:64]
        return cls(
            has_branches=params.get("branched") == "1",
            tool=(params.get("tool") or "")[:200],
            updated_from=_query_date(params.get("from")),
            updated_to=_query_date(params.get("to")),
            score=score,
            score_min=_query_number(params.get("score_min")) if score else None,
            score_max=_query_number(params.get("score_max")) if score else None,
            tag=(params.get("tag") or "")[:64],
            status=status if status in ReviewStatus.values else "",
            annotator=(params.get("annotator") or "")[:150],
            commented=params.get("commented") == "1",
            cost_min=_query_dollars(params.get("cost_min")),
            cost_max=_query_dollars(params.get("cost_max")),
        )

    def base(self) -> SessionListFilters:
        """These filters without the review and cost filters (what ``forkview_list_counts``
        counts)."""
        return replace(self, **_NOT_COUNTED)


#: The filters ``forkview_list_counts`` does not count: each selects through its own index.
_NOT_COUNTED: dict[str, Any] = {
    "score": "",
    "score_min": None,
    "score_max": None,
    "tag": "",
    "status": "",
    "annotator": "",
    "commented": False,
    "cost_min": None,
    "cost_max": None,
}


@dataclass(frozen=True, slots=True)
class ScoreColumn:
    """A score definition as the list shows it (the filter's options, the average column)."""

    name: str
    kind: str
    archived: bool = False
    min_value: float | None = None
    max_value: float | None = None


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
    #: The average of the page's score column (``None``: no score), how many, and its text
    #: (thumbs: ``75% up``; numeric: ``4.2``; categorical: the count).
    score_avg: float | None = None
    score_count: int = 0
    score_text: str = ""
    review_status: str = ReviewStatus.UNREVIEWED
    #: What the session's traces recorded (None: no model call traced).
    cost: CostTotal | None = None

    @property
    def cost_text(self) -> str:
        return describe(self.cost) if self.cost is not None else ""


@dataclass(frozen=True, slots=True)
class SessionListPage:
    rows: tuple[SessionRow, ...]
    number: int
    num_pages: int
    total: int
    sort: str
    tools: tuple[str, ...]
    #: Every score definition (the filter's options) and the one the score column shows.
    definitions: tuple[ScoreColumn, ...] = ()
    score_column: ScoreColumn | None = None

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


def _annotation_sets(filters: SessionListFilters) -> list[QuerySet[Any, Any]]:
    """The session ids each review or cost filter selects, as subqueries (the selection is
    their intersection): each read through its index."""
    sets: list[QuerySet[Any, Any]] = []
    notes = Annotation.objects.order_by()
    if filters.annotator:
        notes = notes.filter(author__username=filters.annotator)
    if filters.score:
        scores = notes.filter(kind=AnnotationKind.SCORE, definition__name=filters.score)
        if filters.score_min is not None:
            scores = scores.filter(value__gte=filters.score_min)
        if filters.score_max is not None:
            scores = scores.filter(value__lte=filters.score_max)
        sets.append(scores.values("session_id"))
    if filters.tag:
        sets.append(notes.filter(kind=AnnotationKind.TAG, label=filters.tag).values("session_id"))
    if filters.commented:
        sets.append(notes.filter(kind=AnnotationKind.COMMENT).values("session_id"))
    if filters.annotator and not (filters.score or filters.tag or filters.commented):
        sets.append(notes.values("session_id"))
    if filters.status and filters.status != ReviewStatus.UNREVIEWED:
        sets.append(SessionReview.objects.filter(status=filters.status).values("session_id"))
    if filters.cost_min is not None or filters.cost_max is not None:
        costs: dict[str, int | None] = {}
        if filters.cost_min is not None:
            costs["cost_nanos__gte"] = to_nanos(Decimal(str(filters.cost_min)))
        if filters.cost_max is not None:
            costs["cost_nanos__lte"] = to_nanos(Decimal(str(filters.cost_max)))
        sets.append(SessionSummary.objects.filter(**costs).values("session_id"))
    return sets


def _reviewed() -> QuerySet[SessionReview, str]:
    """The sessions that are not unreviewed (few: those with a review row saying so)."""
    done = [s for s in ReviewStatus.values if s != ReviewStatus.UNREVIEWED]
    return SessionReview.objects.filter(status__in=done).values_list("session_id", flat=True)


def _row_checks(
    qs: QuerySet[SessionSummary], filters: SessionListFilters
) -> QuerySet[SessionSummary]:
    """``qs`` narrowed by ``filters`` (no review filter) with checks on each row, no index:
    for rows another condition already picked out."""
    if filters.has_branches:
        qs = qs.alias(_branched=_Unindexed(F("branched"))).filter(_branched=1)
    dates = _dates(filters)
    if dates:
        qs = qs.alias(_day=_Unindexed(F("day"))).filter(
            **{f"_day{op}": value for op, value in dates.items()}
        )
    if filters.tool:
        qs = qs.alias(_tool=StrIndex("tools", Value(_tool_token(filters.tool)))).filter(_tool__gt=0)
    return qs


def _selection(filters: SessionListFilters, *, few: bool = False) -> QuerySet[SessionSummary]:
    """The summaries of the sessions ``filters`` select (the one definition of every filter).

    ``few``: the selection is small; it is read through the review filters' indexes when
    there are any (else through the other filters', see :func:`_filtered`); otherwise the
    filters are checked row by row along the sort's index.
    """
    base = filters.base()
    sets = _annotation_sets(filters)
    qs: QuerySet[SessionSummary] = SessionSummary.objects.alias(_sid=_Unindexed(F("session_id")))
    if sets and few:
        for ids in sets:
            qs = qs.filter(session_id__in=ids)
        qs = _row_checks(qs, base)
    else:
        qs = _filtered(qs, base, few=few)
        for ids in sets:
            qs = qs.filter(**{"_sid__in": ids})  # a check on the row in hand
    if filters.status == ReviewStatus.UNREVIEWED:
        qs = qs.exclude(**{"_sid__in": _reviewed()})
    return qs


def _total(filters: SessionListFilters) -> tuple[int, bool]:
    """(sessions ``filters`` select, exact; whether they are few)."""
    if _annotation_sets(filters):
        total = _selection(filters, few=True).count()
        return total, total < FEW
    base = filters.base()
    total, every = _counts(base)
    if filters.status == ReviewStatus.UNREVIEWED:
        total -= _row_checks(
            SessionSummary.objects.filter(session_id__in=_reviewed()), base
        ).count()
    # With no other filter the reviewed ones are left out along the sort's index.
    return total, total < min(FEW, every) and base != SessionListFilters()


def session_ids(filters: SessionListFilters) -> QuerySet[SessionSummary, str] | None:
    """The ids of the sessions ``filters`` select, as a subquery (``None``: no filter, all)."""
    if filters == SessionListFilters():
        return None
    return _selection(filters).values_list("session_id", flat=True)


def score_definitions() -> tuple[ScoreColumn, ...]:
    """Every score definition, in the score bar's order (one query)."""
    rows = ScoreDefinition.objects.order_by("position", "name").values_list(
        "name", "kind", "archived", "min_value", "max_value"
    )
    return tuple(ScoreColumn(*row) for row in rows)


def _score_column(
    filters: SessionListFilters, definitions: tuple[ScoreColumn, ...]
) -> ScoreColumn | None:
    """The definition the score column shows: the filtered one, else the first thumbs or
    numeric one that is not archived."""
    for d in definitions:
        if filters.score and d.name == filters.score:
            return d
    return next(
        (
            d
            for d in definitions
            if not d.archived and d.kind in (ScoreKind.BOOLEAN, ScoreKind.NUMERIC)
        ),
        None,
    )


def score_text(column: ScoreColumn, average: float | None, count: int) -> str:
    """An average as the list shows it: thumbs as the share up, numbers to one decimal,
    categories as their count."""
    if not count or average is None:
        return ""
    if column.kind == ScoreKind.BOOLEAN:
        return f"{average * 100:.0f}% up"
    if column.kind == ScoreKind.NUMERIC:
        return f"{average:.1f}"
    return f"{count} score{'s' if count != 1 else ''}"


def _columns(
    session_ids: list[str], column: ScoreColumn | None
) -> dict[str, tuple[str | None, float | None, int]]:
    """(review status, average score, number of scores) of each session: one query."""
    if not session_ids:
        return {}
    qs = SessionSummary.objects.filter(session_id__in=session_ids).annotate(
        review=Subquery(
            SessionReview.objects.filter(session_id=OuterRef("session_id")).values("status")[:1]
        )
    )
    if column is None:
        return {sid: (status, None, 0) for sid, status in qs.values_list("session_id", "review")}
    scores = Annotation.objects.filter(
        session_id=OuterRef("session_id"), kind=AnnotationKind.SCORE, definition__name=column.name
    ).order_by()
    qs = qs.annotate(
        average=Subquery(scores.values("session_id").annotate(a=Avg("value")).values("a")[:1]),
        scored=Subquery(scores.values("session_id").annotate(n=Count("id")).values("n")[:1]),
    )
    return {
        sid: (status, average, scored or 0)
        for sid, status, average, scored in qs.values_list(
            "session_id", "review", "average", "scored"
        )
    }


def annotator_names(selected: str = "") -> tuple[str, ...]:
    """The usernames of everyone who may annotate (the annotator filter's options; one
    query over the users), with ``selected`` kept when it is not among them."""
    permission = Permission.objects.filter(
        content_type__app_label=APP_LABEL, codename=ANNOTATE_CODENAME
    )
    users = get_user_model()._default_manager.filter(
        Q(is_superuser=True)
        | Q(user_permissions__in=permission)
        | Q(groups__permissions__in=permission),
        is_active=True,
    )
    field = get_user_model().USERNAME_FIELD
    names = sorted(set(users.values_list(field, flat=True)))
    if selected and selected not in names:
        names.append(selected)
    return tuple(names)


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
    """One page of the session table: 6 queries (count, page, titles, score definitions,
    the rows' score and review status, tool options; "unreviewed" adds one count).

    Args:
        filters: Has branches, used tool, last-activity date range, the review filters.
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
    total, few = _total(filters)
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
        _selection(filters, few=few)
        .order_by(*ordering)
        .values_list(
            "session_id",
            "title_message_id",
            "turn_count",
            "branch_count",
            "total_tokens",
            "created_at",
            "updated_at",
            "cost_nanos",
            "model_calls",
            "unpriced_calls",
            named=True,
        )[start : start + per_page]
    )
    titles = _titles([s.title_message_id for s in summaries if s.title_message_id is not None])
    definitions = score_definitions()
    score_column = _score_column(filters, definitions)
    columns = _columns([s.session_id for s in summaries], score_column)
    rows = []
    for s in summaries:
        status, average, scored = columns.get(s.session_id, (None, None, 0))
        rows.append(
            SessionRow(
                session_id=s.session_id,
                title=_title(titles.get(s.title_message_id or 0)) or "(no user message)",
                turns=s.turn_count,
                branches=s.branch_count,
                total_tokens=s.total_tokens,
                created_at=s.created_at,
                updated_at=s.updated_at,
                url=session_url(s.session_id),
                score_avg=average,
                score_count=scored,
                score_text=score_text(score_column, average, scored) if score_column else "",
                review_status=status or ReviewStatus.UNREVIEWED,
                cost=(
                    recorded_total(
                        cost_nanos=s.cost_nanos, calls=s.model_calls, unpriced=s.unpriced_calls
                    )
                    if s.model_calls
                    else None
                ),
            )
        )
    return SessionListPage(
        rows=tuple(rows),
        number=number,
        num_pages=num_pages,
        total=total,
        sort=sort,
        tools=tool_names(),
        definitions=definitions,
        score_column=score_column,
    )


def tool_names() -> tuple[str, ...]:
    """Every tool name used in any session (for the "used tool" filter)."""
    names = (
        ToolSessions.objects.filter(sessions__gt=0)
        .order_by("tool_name")
        .values_list("tool_name", flat=True)
    )
    return tuple(names)
