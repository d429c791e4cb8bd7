"""What the admin's pages share: links, columns, list filters and small HTML fragments.

A single link is built with ``format_html``; anything longer (tables, lists of links) is a
template under ``templates/admin/conversations/``, rendered with :func:`fragment`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth import get_permission_codename
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from .. import classify, items
from ..models import MAIN_BRANCH, MessageStructure, ToolSessions

__all__ = [
    "PREVIEW_LENGTH",
    "SessionFilter",
    "admin_change_link",
    "admin_change_url",
    "changelist_link",
    "change_url",
    "changelist_url",
    "column",
    "export_url",
    "fragment",
    "item_preview",
    "label_filters",
    "link",
    "local_datetime",
    "model_permission",
    "review_url",
    "session_change_url",
    "session_link",
    "with_query",
]

#: Characters of an item shown on one line in a changelist or on the session page.
PREVIEW_LENGTH = 90


# ---- URLs ----------------------------------------------------------------------------------


def with_query(url: str, **params: Any) -> str:
    """``url`` with ``params`` as its (URL-encoded) query string; a list value repeats the key.

    Query values are plain strings for ``request.GET``: the admin's ``quote()`` is for ids
    in the path only.
    """
    return f"{url}?{urlencode(params, doseq=True)}" if params else url


def review_url(session_id: str) -> str | None:
    """The session's review page, if the review UI is installed."""
    try:
        return reverse("session_detail", args=[session_id])
    except NoReverseMatch:
        return None


def export_url(session_id: str, fmt: str, branch_id: str | None = None) -> str | None:
    """A download of the session in ``fmt`` (one branch for jsonl and markdown), if routed."""
    try:
        url = reverse("session_export", args=[session_id, fmt])
    except NoReverseMatch:
        return None
    return with_query(url, branch=branch_id) if branch_id else url


def model_permission(action: str, model: type[Model]) -> str:
    """Django's own permission to ``action`` (add, change, delete, view) ``model``."""
    opts = model._meta
    return f"{opts.app_label}.{get_permission_codename(action, opts)}"


def change_url(model: type[Model], pk: int | str) -> str:
    """The admin change page of ``model``'s object ``pk`` (no query: the id is enough)."""
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(pk)])


def admin_change_url(obj: Model) -> str:
    """The admin change page of ``obj``."""
    return change_url(type(obj), obj.pk)


def session_change_url(session_id: str) -> str:
    """The admin page of a session (ids with slashes are quoted the admin's way)."""
    return reverse("admin:conversations_agentsession_change", args=[quote(session_id)])


def changelist_url(model: type[Model], **filters: Any) -> str:
    """The admin list of ``model`` narrowed by ``filters`` (query-string lookups)."""
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    return with_query(url, **filters)


# ---- Links and fragments -------------------------------------------------------------------


def link(url: str, text: object) -> SafeString:
    """One ``<a>``; ``text`` is escaped."""
    return format_html('<a href="{}">{}</a>', url, text)


def admin_change_link(obj: Model, text: object = None) -> SafeString:
    """A link to ``obj``'s admin page, reading ``text`` (``str(obj)`` by default)."""
    return link(admin_change_url(obj), obj if text is None else text)


def changelist_link(model: type[Model], text: str, **filters: Any) -> SafeString:
    """A link to the admin list of ``model`` narrowed by ``filters``."""
    return link(changelist_url(model, **filters), text)


def session_link(session_id: str) -> SafeString:
    """A link to a session's admin page, reading its id."""
    return link(session_change_url(session_id), session_id)


def fragment(template: str, context: Mapping[str, Any]) -> SafeString:
    """A template under ``admin/conversations/`` rendered for a read-only field."""
    # A rendered template is already safe (the context was escaped); mark_safe types it so.
    html = render_to_string(f"admin/conversations/{template}", dict(context))
    return mark_safe(html.strip())


# ---- Values --------------------------------------------------------------------------------


def local_datetime(value: datetime | None) -> str:
    """A datetime as the admin shows its own (local time, ``DATETIME_FORMAT``); ``-`` if none."""
    if value is None:
        return "-"
    if settings.USE_TZ and timezone.is_aware(value):  # what templates do
        value = timezone.localtime(value)
    return formats.date_format(value, "DATETIME_FORMAT")


def item_preview(item: Any) -> str:
    """One line for a changelist or the session page; the message's own page has the JSON."""
    return items.item_preview(item, PREVIEW_LENGTH)


def column(field: str, label: str) -> Callable[[Any], Any]:
    """A changelist column showing ``field`` under a shorter heading, sortable by it."""

    @admin.display(description=label, ordering=field)
    def show(obj: Any) -> Any:
        return getattr(obj, field)

    return show


# ---- List filters --------------------------------------------------------------------------


class SessionFilter(admin.SimpleListFilter):
    """Shows (and clears) the session a list is narrowed to by the session page's links.

    Lists only the chosen session: a list of every session would be as long as the data.
    """

    title = "session"
    parameter_name = "session__session_id__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, value)] if value else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(session_id=value) if value else queryset


#: The message types offered when no session is chosen (any other is one click away on a
#: session's list, or typed into the URL): a fixed list, so the filter costs no query.
COMMON_MESSAGE_TYPES = (
    "user",
    "assistant",
    "reasoning",
    "function_call",
    "function_call_output",
    *(t for t in classify.TOOL_CALL_TYPES if t not in ("function_call", "tool_call")),
)
#: The most tool names offered (the most used first, from ``forkview_tools``).
MAX_TOOL_OPTIONS = 100


class _LabelFilter(admin.SimpleListFilter):
    """A structure-row label (branch, message type, tool), with options that cost a bounded
    query whatever the size of the database: Django's ``AllValuesFieldListFilter`` reads
    ``SELECT DISTINCT`` over every structure row on every page of the list.

    ``field``: the structure row's column; ``via``: how the list's rows reach their structure
    rows (``""``: they are structure rows; else the column of ``MessageStructure`` that points
    at them, matched with ``pk__in``, so no join multiplies the rows).
    """

    field = ""
    via = ""

    def _session(self, request: HttpRequest) -> str:
        return str(request.GET.get(SessionFilter.parameter_name) or "")

    def options(self, request: HttpRequest) -> list[str]:
        raise NotImplementedError

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        values = list(dict.fromkeys(self.options(request)))
        current = self.value()
        if current and current not in values:
            values.append(current)
        return [(value, value) for value in values]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        if not self.via:
            return queryset.filter(**{self.field: value})
        rows = MessageStructure.objects.filter(**{self.field: value}).values(self.via)
        return queryset.filter(pk__in=rows)

    def _in_session(self, request: HttpRequest) -> list[str] | None:
        """The values of the chosen session's rows (one indexed query), or None."""
        session = self._session(request)
        if not session:
            return None
        rows = MessageStructure.objects.filter(session_id=session).exclude(**{self.field: None})
        return sorted(rows.order_by().values_list(self.field, flat=True).distinct()[:500])


class BranchFilter(_LabelFilter):
    title = "branch"
    field = "branch_id"

    def options(self, request: HttpRequest) -> list[str]:
        return self._in_session(request) or [MAIN_BRANCH]


class MessageTypeFilter(_LabelFilter):
    title = "message type"
    field = "message_type"

    def options(self, request: HttpRequest) -> list[str]:
        found = self._in_session(request)
        return found if found is not None else list(COMMON_MESSAGE_TYPES)


class ToolFilter(_LabelFilter):
    title = "tool"
    field = "tool_name"

    def options(self, request: HttpRequest) -> list[str]:
        found = self._in_session(request)
        if found is not None:
            return [name for name in found if name]
        rows = ToolSessions.objects.filter(sessions__gt=0).order_by("-sessions", "tool_name")
        return list(rows.values_list("tool_name", flat=True)[:MAX_TOOL_OPTIONS])


def label_filters(prefix: str, via: str = "") -> list[type[_LabelFilter]]:
    """Filters by the structure rows' branch, message type and tool, with the query
    parameters ``<prefix>branch_id`` etc. (``via``: see :class:`_LabelFilter`)."""
    return [
        type(
            f"{base.__name__}For{via.title().replace('_', '') or 'Rows'}",
            (base,),
            {"parameter_name": f"{prefix}{base.field}", "via": via},
        )
        for base in (BranchFilter, MessageTypeFilter, ToolFilter)
    ]
