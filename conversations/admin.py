"""Staff data editing that keeps the SDK's invariants.

Every write goes through ``conversations.services`` (the same rules the commands use):

- items are edited as indented JSON, validated, and their structure rows relabelled through
  ``conversations.classify``; an edit that would change the user-turn numbering is refused;
- only the last item of a branch can be deleted (``pop_item`` semantics), so turn numbers
  never get gaps; structure rows are otherwise read-only (they are derived data);
- branch rename / delete, session duplicate, structure rebuild and the usage health report
  are admin views and actions, each recorded in the admin log (``LogEntry``);
- ``branch_reservations`` has a composite primary key, which Django 5.2's admin cannot
  register: reservations are listed read-only on the session page instead.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from . import classify, services
from .fields import UndecodableJSON
from .forms import (
    USAGE_NUMBER_FIELDS,
    AgentMessageForm,
    BranchRenameForm,
    SessionDuplicateForm,
    TurnUsageForm,
)
from .models import (
    MAIN_BRANCH,
    AgentMessage,
    AgentSession,
    BranchReservation,
    MessageStructure,
    PreferredBranch,
    SessionClearGeneration,
    TurnUsage,
)

admin.site.site_header = "Forkview administration"
admin.site.site_title = "Forkview admin"

PREVIEW_LENGTH = 90
#: The session page lists this many messages; the messages changelist has them all.
SESSION_PAGE_MESSAGES = 200


# ---- Links -------------------------------------------------------------------------------


def review_url(session_id: str) -> str | None:
    """The session's review page, if the review UI is installed."""
    try:
        return reverse("session_detail", args=[session_id])
    except NoReverseMatch:
        return None


def with_query(url: str, **params: Any) -> str:
    """``url`` with ``params`` as its (URL-encoded) query string; a list value repeats the key.

    Query values are plain strings for ``request.GET``: the admin's ``quote()`` is for ids
    in the path only.
    """
    return f"{url}?{urlencode(params, doseq=True)}" if params else url


def export_url(session_id: str, fmt: str, branch_id: str | None = None) -> str | None:
    try:
        url = reverse("session_export", args=[session_id, fmt])
    except NoReverseMatch:
        return None
    return with_query(url, branch=branch_id) if branch_id else url


def admin_change_link(obj: Any, text: Any = None) -> SafeString:
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)])
    return format_html('<a href="{}">{}</a>', url, text if text is not None else obj)


def changelist_link(model: type, text: str, **filters: Any) -> SafeString:
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    return format_html('<a href="{}">{}</a>', with_query(url, **filters), text)


def local_datetime(value: Any) -> str:
    """A datetime as the admin shows its own (local time, ``DATETIME_FORMAT``); ``-`` if none."""
    if value is None:
        return "-"
    return formats.date_format(timezone.template_localtime(value), "DATETIME_FORMAT")


def column(field: str, label: str) -> Any:
    """A changelist column showing ``field`` under a shorter heading, sortable by it."""

    @admin.display(description=label, ordering=field)
    def show(obj: Any) -> Any:
        return getattr(obj, field)

    return show


def session_link(session_id: str) -> SafeString:
    url = reverse("admin:conversations_agentsession_change", args=[quote(session_id)])
    return format_html('<a href="{}">{}</a>', url, session_id)


def parts_text(value: Any) -> str:
    """A content (or output) value as text: a string, or a list of parts' texts.

    ``input_text`` / ``output_text`` parts give their text, refusals their refusal, other
    parts (images, files, audio) a ``[type]`` marker; anything else is shown as JSON.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):
        texts = []
        for part in value:
            text = part.get("text", part.get("refusal"))
            texts.append(text if isinstance(text, str) else f"[{part.get('type', 'part')}]")
        return " ".join(texts)
    return json.dumps(value, ensure_ascii=False)


def item_preview(data: Any) -> str:
    """One line for a changelist or the session page; the message's own page has the JSON."""
    if isinstance(data, UndecodableJSON):
        return f"(undecodable) {str(data)[:PREVIEW_LENGTH]}"
    if not isinstance(data, dict):
        text = json.dumps(data, ensure_ascii=False)
    elif "content" in data:
        text = parts_text(data["content"])
    elif data.get("type") == "function_call":
        text = f"{data.get('name')}({data.get('arguments', '')})"
    elif "output" in data:
        text = parts_text(data["output"])
    elif data.get("type") == "reasoning" and data.get("summary"):
        text = parts_text(data["summary"])
    elif isinstance(data.get("action"), dict) and isinstance(data["action"].get("query"), str):
        text = f"{data.get('type')}: {data['action']['query']}"  # web_search_call and alike
    else:
        text = json.dumps(data, ensure_ascii=False)
    text = " ".join(text.split())  # one line: newlines and runs of spaces folded
    return text if len(text) <= PREVIEW_LENGTH else text[:PREVIEW_LENGTH] + "..."


# ---- Sessions ----------------------------------------------------------------------------


class MessageInline(admin.TabularInline):
    model = AgentMessage
    fk_name = "session"
    fields = ["message_link", "kind", "preview", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False
    ordering = ["id"]
    verbose_name_plural = "messages (open one to edit its JSON)"
    # Read-only rows without Django's per-row "message N of ..." caption; at most
    # SESSION_PAGE_MESSAGES rows (see AgentSessionAdmin.get_formset_kwargs).
    template = "admin/conversations/agentsession/message_inline.html"
    max_shown = SESSION_PAGE_MESSAGES

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="message")
    def message_link(self, obj: AgentMessage) -> SafeString:
        return admin_change_link(obj, f"#{obj.pk}")

    @admin.display(description="type")
    def kind(self, obj: AgentMessage) -> str:
        return classify.message_type(obj.message_data)

    @admin.display(description="item")
    def preview(self, obj: AgentMessage) -> str:
        return item_preview(obj.message_data)


@admin.register(AgentSession)
class AgentSessionAdmin(admin.ModelAdmin):
    list_display = [
        "session_id",
        "message_count",
        "branch_count",
        "created_at",
        "updated_at",
        "review_link",
    ]
    list_filter = [("structure__branch_id", admin.AllValuesFieldListFilter), "updated_at"]
    search_fields = ["session_id", "messages__message_data"]
    date_hierarchy = "updated_at"
    fields = [
        "session_id",
        "created_at",
        "updated_at",
        "links",
        "branches",
        "reservations",
        "clear_generation",
    ]
    readonly_fields = fields
    inlines = [MessageInline]
    actions = ["duplicate_session", "rebuild_structure", "usage_health_report", "delete_selected"]
    show_full_result_count = False

    # -- display --

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).with_counts()

    @admin.display(description="messages", ordering="message_count")
    def message_count(self, obj: AgentSession) -> int:
        return obj.message_count

    @admin.display(description="branches", ordering="branch_count")
    def branch_count(self, obj: AgentSession) -> int:
        return obj.branch_count

    @admin.display(description="review")
    def review_link(self, obj: AgentSession) -> SafeString | str:
        url = review_url(obj.session_id)
        return format_html('<a href="{}">review</a>', url) if url else "-"

    @admin.display(description="links")
    def links(self, obj: AgentSession) -> SafeString:
        items = [
            changelist_link(AgentMessage, "messages", session__session_id__exact=obj.pk),
            changelist_link(MessageStructure, "structure rows", session__session_id__exact=obj.pk),
            changelist_link(TurnUsage, "usage", session__session_id__exact=obj.pk),
            format_html(
                '<a href="{}">usage health</a>',
                with_query(reverse("admin:conversations_usage_health"), session=obj.pk),
            ),
        ]
        url = review_url(obj.session_id)
        if url:
            items.insert(0, format_html('<a href="{}">review page</a>', url))
        url = export_url(obj.session_id, "json")
        if url:
            items.append(format_html('<a href="{}">export tree (JSON)</a>', url))
        return format_html_join(" · ", "{}", ((i,) for i in items))

    @admin.display(description="branches")
    def branches(self, obj: AgentSession) -> SafeString | str:
        summaries = sorted(  # main first, then as listed (oldest first)
            services.branch_list(session_id=obj.session_id),
            key=lambda b: b["branch_id"] != MAIN_BRANCH,
        )
        if not summaries:
            return format_html(
                "No structure rows (plain SQLiteSession data?): select the session in {} and "
                "run the action “Build structure rows for messages without any”.",
                changelist_link(AgentSession, "the list", session_id__exact=obj.pk),
            )
        usage = {
            row["branch_id"]: row
            for row in TurnUsage.objects.filter(session_id=obj.session_id)
            .values("branch_id")
            .annotate(total=Sum("total_tokens"))
        }
        rows = []
        for summary in summaries:
            branch = summary["branch_id"]
            actions = []
            if branch != MAIN_BRANCH:  # main can be neither renamed nor deleted
                for view, label in (("branch_rename", "rename"), ("branch_delete", "delete")):
                    url = reverse(f"admin:conversations_{view}", args=[quote(obj.pk)])
                    actions.append((with_query(url, branch=branch), label))
            for fmt in ("markdown", "jsonl"):
                url = export_url(obj.session_id, fmt, branch)
                if url:
                    actions.append((url, fmt))
            rows.append(
                (
                    changelist_link(
                        MessageStructure,
                        branch,
                        session__session_id__exact=obj.pk,
                        branch_id=branch,
                    ),
                    summary["message_count"],
                    summary["user_turns"],
                    (usage.get(branch) or {}).get("total") or 0,
                    local_datetime(summary["created_at"]),
                    format_html_join(" · ", '<a href="{}">{}</a>', actions),
                )
            )
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            rows,
        )
        return format_html(
            '<table class="forkview-branches"><thead><tr><th>branch</th><th>items</th>'
            "<th>user turns</th><th>tokens</th><th>first item</th><th>actions</th></tr>"
            "</thead><tbody>{}</tbody></table>",
            body,
        )

    @admin.display(description="reserved branch ids")
    def reservations(self, obj: AgentSession) -> str:
        ids = BranchReservation.objects.filter(session_id=obj.session_id).values_list(
            "branch_id", flat=True
        )
        return ", ".join(sorted(ids)) or "-"

    @admin.display(description="clear generation")
    def clear_generation(self, obj: AgentSession) -> int | str:
        value = (
            SessionClearGeneration.objects.filter(session_id=obj.session_id)
            .values_list("generation", flat=True)
            .first()
        )
        return "-" if value is None else value

    # -- the read-only change page --

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        # Every field is read-only: edits happen on a message's own page or through the
        # branch links and actions, so the page offers no Save buttons (Close and Delete stay).
        context = {
            "title": f"View {self.opts.verbose_name}",
            "show_save": False,
            "show_save_and_continue": False,
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, context)

    def get_formset_kwargs(
        self, request: HttpRequest, obj: Any, inline: Any, prefix: str
    ) -> dict[str, Any]:
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, MessageInline) and obj is not None:
            first = AgentMessage.objects.filter(session_id=obj.pk).order_by("id")
            ids = list(first.values_list("id", flat=True)[: inline.max_shown])
            kwargs["queryset"] = inline.get_queryset(request).filter(pk__in=ids)
        return kwargs

    # -- permissions --

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # sessions are written by DjangoSession, the importers or "duplicate"

    def has_duplicate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.add_agentsession")

    def has_branch_delete_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.change_agentsession") and (
            request.user.has_perm("conversations.delete_messagestructure")
        )

    def has_usage_health_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.view_turnusage")

    # -- deletes: like clear_session (reservations kept, other instances back to main) --

    def delete_model(self, request: HttpRequest, obj: AgentSession) -> None:
        services.session_delete(session_id=obj.session_id)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple:
        # The tables' own cascade does the deleting (DO_NOTHING on the Python side), so the
        # confirmation page would only count the sessions: count their rows too.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        ids = [obj.pk for obj in objs]
        for model in (AgentMessage, MessageStructure, TurnUsage):
            count = model.objects.filter(session_id__in=ids).count()
            if count:
                counts[model._meta.verbose_name_plural] = count
        return deleted, counts, perms_needed, protected

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for session_id in list(queryset.values_list("session_id", flat=True)):
            services.session_delete(session_id=session_id)

    # -- actions --

    @admin.action(description="Duplicate the selected session", permissions=["duplicate"])
    def duplicate_session(self, request: HttpRequest, queryset: QuerySet) -> Any:
        ids = list(queryset.values_list("session_id", flat=True))
        if len(ids) != 1:
            self.message_user(request, "Select exactly one session to duplicate.", messages.WARNING)
            return None
        return HttpResponseRedirect(
            reverse("admin:conversations_session_duplicate", args=[quote(ids[0])])
        )

    @admin.action(
        description="Build structure rows for messages without any", permissions=["change"]
    )
    def rebuild_structure(self, request: HttpRequest, queryset: QuerySet) -> None:
        for session in queryset:
            result = services.structure_rebuild(session_id=session.session_id)
            if result.created or result.skipped_undecodable:
                note = f"Built {result.created} structure row(s) on '{MAIN_BRANCH}'"
                if result.skipped_undecodable:
                    note += (
                        f"; left {len(result.skipped_undecodable)} undecodable message(s) "
                        f"without rows: ids {result.skipped_undecodable}"
                    )
                self.log_change(request, session, note)
                self.message_user(request, f"{note} (session '{session.session_id}').")
            else:
                self.message_user(
                    request,
                    f"Every message of session '{session.session_id}' already has structure rows.",
                )

    @admin.action(description="Usage health report", permissions=["usage_health"])
    def usage_health_report(self, request: HttpRequest, queryset: QuerySet) -> Any:
        ids = list(queryset.values_list("session_id", flat=True))
        return HttpResponseRedirect(
            with_query(reverse("admin:conversations_usage_health"), session=ids)
        )

    # -- extra views --

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("usage-health/", wrap(self.usage_health_view), name="conversations_usage_health"),
            path(
                "<path:object_id>/branches/rename/",
                wrap(self.branch_rename_view),
                name="conversations_branch_rename",
            ),
            path(
                "<path:object_id>/branches/delete/",
                wrap(self.branch_delete_view),
                name="conversations_branch_delete",
            ),
            path(
                "<path:object_id>/duplicate/",
                wrap(self.duplicate_view),
                name="conversations_session_duplicate",
            ),
            *super().get_urls(),
        ]

    def _session_or_404(self, request: HttpRequest, object_id: str, allowed: bool) -> AgentSession:
        """The session of an extra view; 403 unless the user may see it and ``allowed``."""
        session = get_object_or_404(AgentSession, pk=unquote(object_id))
        if not (self.has_view_permission(request, session) and allowed):
            raise PermissionDenied
        return session

    def _render(self, request: HttpRequest, template: str, **context: Any) -> TemplateResponse:
        session = context.get("session")
        if session is not None:
            context["session_url"] = self._session_url(session)
        return TemplateResponse(
            request,
            f"admin/conversations/agentsession/{template}",
            {**self.admin_site.each_context(request), "opts": self.opts, **context},
        )

    def _session_url(self, session: AgentSession) -> str:
        return reverse("admin:conversations_agentsession_change", args=[quote(session.pk)])

    def _done(
        self,
        request: HttpRequest,
        session: AgentSession,
        note: str,
        message: str,
        go_to: AgentSession | None = None,
    ) -> HttpResponseRedirect:
        """Log ``note`` on the session, tell the user ``message``, show ``go_to`` (or it)."""
        self.log_change(request, session, note)
        self.message_user(request, message)
        return HttpResponseRedirect(self._session_url(go_to or session))

    def _branch_summary(self, session: AgentSession, branch: str) -> dict[str, Any] | None:
        summaries = services.branch_list(session_id=session.pk)
        return next((b for b in summaries if b["branch_id"] == branch), None)

    def _branch_refusal(self, session: AgentSession, branch: str, main_error: str) -> str | None:
        """Why ``branch`` cannot be renamed or deleted, shown instead of the form."""
        if branch == MAIN_BRANCH:
            return main_error
        if self._branch_summary(session, branch) is None:
            return services.BRANCH_MISSING_ERROR.format(branch=branch, session=session.pk)
        return None

    def branch_rename_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        session = self._session_or_404(request, object_id, self.has_change_permission(request))
        form = BranchRenameForm(request.POST or None, initial={"old": request.GET.get("branch")})
        old = form["old"].value() or ""
        if request.method == "POST" and form.is_valid():
            new = form.cleaned_data["new"]
            try:
                moved = services.branch_rename(session_id=session.pk, old=old, new=new)
            except services.ServiceError as exc:
                form.add_error("new", str(exc))
            else:
                note = f"Renamed branch '{old}' to '{new}' ({moved} structure rows)"
                return self._done(request, session, note, f"{note}; '{old}' stays reserved.")
        return self._render(
            request,
            "action_form.html",
            title=f"Rename branch “{old}”",
            session=session,
            form=form,
            error=self._branch_refusal(session, old, services.MAIN_RENAME_ERROR),
            intro=(
                f"The branch's structure rows and usage move to the new id. “{old}” stays "
                "reserved: no branch of this session can use it again."
            ),
            submit="Rename branch",
        )

    def branch_delete_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        session = self._session_or_404(
            request, object_id, self.has_branch_delete_permission(request)
        )
        branch = request.POST.get("branch") or request.GET.get("branch", "")
        error = None
        if request.method == "POST":
            try:
                services.branch_delete(session_id=session.pk, branch_id=branch)
            except ValueError as exc:
                error = str(exc)
            else:
                note = f"Deleted branch '{branch}' with its usage (id stays reserved)"
                return self._done(request, session, note, f"{note}.")
        return self._render(
            request,
            "branch_delete.html",
            title=f"Delete branch “{branch}”",
            session=session,
            branch=branch,
            summary=self._branch_summary(session, branch),
            error=error or self._branch_refusal(session, branch, services.MAIN_DELETE_ERROR),
        )

    def duplicate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        session = self._session_or_404(request, object_id, self.has_duplicate_permission(request))
        form = SessionDuplicateForm(
            request.POST or None, initial={"new_session_id": f"{session.pk}-copy"}
        )
        if request.method == "POST" and form.is_valid():
            new_id = form.cleaned_data["new_session_id"]
            try:
                copied = services.session_duplicate(session_id=session.pk, new_session_id=new_id)
            except services.ServiceError as exc:
                form.add_error("new_session_id", str(exc))
            else:
                copy = AgentSession.objects.get(pk=new_id)
                self.log_addition(request, copy, f"Duplicated from session '{session.pk}'")
                note = f"Duplicated to session '{new_id}'"
                message = f"Copied {copied} message(s) to '{new_id}'."
                return self._done(request, session, note, message, go_to=copy)
        return self._render(
            request,
            "action_form.html",
            title=f"Duplicate session “{session.pk}”",
            session=session,
            form=form,
            intro=(
                "Copies every message, branch, usage row and reserved branch id to a new "
                "session, with the same timestamps. This session is not changed."
            ),
            submit="Duplicate",
        )

    def usage_health_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_usage_health_permission(request):
            raise PermissionDenied
        session_ids = request.GET.getlist("session") or None
        report = services.usage_health(session_ids=session_ids)
        known = set(
            AgentSession.objects.filter(pk__in=session_ids or []).values_list("pk", flat=True)
        )
        return self._render(
            request,
            "usage_health.html",
            title="Usage health",
            report=report,
            session_ids=session_ids,
            unknown_ids=[i for i in session_ids or [] if i not in known],
            missing_usage=[
                (
                    k,
                    f"copied turn: its usage is on {', '.join(k.usage_on)}"
                    if k.usage_on
                    else "no usage stored",
                )
                for k in report.turns_without_usage
            ],
            usage_changelist=reverse("admin:conversations_turnusage_changelist"),
            structure_changelist=reverse("admin:conversations_messagestructure_changelist"),
        )


# ---- Messages ----------------------------------------------------------------------------


class SessionFilter(admin.SimpleListFilter):
    """Shows (and clears) the session a list is narrowed to by the session page's links.

    Lists only the chosen session: a list of every session would be as long as the data.
    """

    title = "session"
    parameter_name = "session__session_id__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, value)] if value else []

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(session_id=value) if value else queryset


def label_filters(prefix: str) -> list[tuple[str, type]]:
    """Filters by the structure rows' branch, message type and tool (``prefix`` reaches them)."""
    return [
        (f"{prefix}{name}", admin.AllValuesFieldListFilter)
        for name in ("branch_id", "message_type", "tool_name")
    ]


class PopDeleteAdmin(admin.ModelAdmin):
    """Deletes like ``pop_item``: one object at a time, refused with the reason unless allowed.

    Subclasses say why an object cannot go now (``delete_problems``) and delete it through
    a service (``delete_model``); there is no bulk "delete selected" action.
    """

    def delete_problems(self, obj: Any) -> list[str]:
        raise NotImplementedError

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: Any = None
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        problems = self.delete_problems(obj) if obj is not None else []
        if problems:
            self.message_user(request, " ".join(problems), messages.ERROR)
            opts = self.opts
            url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)])
            return HttpResponseRedirect(url)
        return super().delete_view(request, object_id, extra_context)


@admin.register(AgentMessage)
class AgentMessageAdmin(PopDeleteAdmin):
    form = AgentMessageForm
    list_display = ["id", "session_link_col", "kind", "tool", "preview", "created_at"]
    list_display_links = ["id"]
    list_filter = [SessionFilter, *label_filters("structure__"), "created_at"]
    search_fields = ["=session__session_id", "message_data"]
    date_hierarchy = "created_at"
    fields = ["id", "session_col", "created_at", "structure_rows", "message_data"]
    readonly_fields = ["id", "session_col", "created_at", "structure_rows"]
    list_select_related = False
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # items are appended by DjangoSession (turn numbering)

    @admin.display(description="session", ordering="session")
    def session_link_col(self, obj: AgentMessage) -> SafeString:
        return session_link(obj.session_id)

    @admin.display(description="session")
    def session_col(self, obj: AgentMessage) -> SafeString:
        link = session_link(obj.session_id)
        url = review_url(obj.session_id)
        if url:
            return format_html('{} (<a href="{}">review</a>)', link, url)
        return link

    @admin.display(description="type")
    def kind(self, obj: AgentMessage) -> str:
        return classify.message_type(obj.message_data)

    @admin.display(description="tool")
    def tool(self, obj: AgentMessage) -> str:
        return classify.tool_name(obj.message_data) or ""

    @admin.display(description="item")
    def preview(self, obj: AgentMessage) -> str:
        return item_preview(obj.message_data)

    @admin.display(description="on branches")
    def structure_rows(self, obj: AgentMessage) -> SafeString | str:
        rows = obj.structure.order_by("sequence_number")
        if not rows:
            return "On no branch (no structure rows)."
        return format_html_join(
            ", ",
            "{} (sequence {}, turn {}, {})",
            (
                (
                    admin_change_link(r, r.branch_id),
                    r.sequence_number,
                    "-" if r.user_turn_number is None else r.user_turn_number,
                    r.message_type,
                )
                for r in rows
            ),
        )

    def save_model(self, request: HttpRequest, obj: AgentMessage, form: Any, change: bool) -> None:
        result = services.message_update(message_id=obj.pk, item=form.cleaned_data["message_data"])
        request._forkview_change_note = (  # type: ignore[attr-defined]
            f"Changed the item JSON ({result.relabelled} structure row(s) relabelled):\n"
            f"{result.diff}"
        )

    def construct_change_message(
        self, request: HttpRequest, form: Any, formsets: Any, add: bool = False
    ) -> Any:
        note = getattr(request, "_forkview_change_note", None)
        return (
            note
            if note is not None
            else super().construct_change_message(request, form, formsets, add)
        )

    def delete_problems(self, obj: AgentMessage) -> list[str]:
        return services.message_delete_problems(message=obj)

    def delete_model(self, request: HttpRequest, obj: AgentMessage) -> None:
        services.message_delete(message_id=obj.pk)


# ---- Structure rows ----------------------------------------------------------------------


@admin.register(MessageStructure)
class MessageStructureAdmin(PopDeleteAdmin):
    list_display = [
        "id",
        "session_col",
        column("branch_id", "branch"),
        column("sequence_number", "sequence"),
        column("user_turn_number", "turn"),
        "kind",
        "message_col",
    ]
    list_filter = [SessionFilter, *label_filters(""), "created_at"]
    search_fields = ["=session__session_id", "message__message_data"]
    date_hierarchy = "created_at"
    ordering = ["session", "sequence_number"]
    fields = [
        "session_col",
        "message_col",
        "branch_id",
        "sequence_number",
        "user_turn_number",
        "branch_turn_number",
        "message_type",
        "tool_name",
        "created_at",
    ]
    readonly_fields = fields
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # derived data: edit the message (labels) or use the branch actions

    @admin.display(description="session", ordering="session")
    def session_col(self, obj: MessageStructure) -> SafeString:
        return session_link(obj.session_id)

    @admin.display(description="type (tool)", ordering="message_type")
    def kind(self, obj: MessageStructure) -> str:
        return f"{obj.message_type} ({obj.tool_name})" if obj.tool_name else obj.message_type

    @admin.display(description="message")
    def message_col(self, obj: MessageStructure) -> SafeString:
        url = reverse("admin:conversations_agentmessage_change", args=[obj.message_id])
        return format_html('<a href="{}">#{}</a>', url, obj.message_id)

    def delete_problems(self, obj: MessageStructure) -> list[str]:
        return services.structure_row_delete_problems(row=obj)

    def delete_model(self, request: HttpRequest, obj: MessageStructure) -> None:
        services.structure_row_delete(row_id=obj.pk)


# ---- Usage -------------------------------------------------------------------------------


@admin.register(TurnUsage)
class TurnUsageAdmin(admin.ModelAdmin):
    form = TurnUsageForm
    list_display = [
        "id",
        "session_col",
        column("branch_id", "branch"),
        column("user_turn_number", "turn"),
        "requests",
        column("input_tokens", "input"),
        column("output_tokens", "output"),
        column("total_tokens", "total"),
    ]
    list_filter = [SessionFilter, ("branch_id", admin.AllValuesFieldListFilter), "created_at"]
    search_fields = ["=session__session_id"]
    date_hierarchy = "created_at"
    raw_id_fields = ["session"]
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return ["created_at"]
        # Usage belongs to one turn: moving it would be a different row.
        return ["session_col", "branch_id", "user_turn_number", "turn_rows", "created_at"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return list(TurnUsageForm.Meta.fields)
        turn = ["session_col", "branch_id", "user_turn_number", "turn_rows"]
        return [*turn, *USAGE_NUMBER_FIELDS, "created_at"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        kwargs["fields"] = [
            f
            for f in self.get_fields(request, obj)
            if f not in self.get_readonly_fields(request, obj)
        ]
        return super().get_form(request, obj, change, **kwargs)

    @admin.display(description="session", ordering="session")
    def session_col(self, obj: TurnUsage) -> SafeString:
        return session_link(obj.session_id)

    @admin.display(description="turn's items")
    def turn_rows(self, obj: TurnUsage) -> SafeString:
        count = MessageStructure.objects.filter(
            session_id=obj.session_id,
            branch_id=obj.branch_id,
            user_turn_number=obj.user_turn_number,
        ).count()
        if not count:
            return format_html("<strong>none: this usage belongs to no turn</strong>")
        return changelist_link(
            MessageStructure,
            f"{count} item(s)",
            session__session_id__exact=obj.session_id,
            branch_id=obj.branch_id,
            user_turn_number=obj.user_turn_number,
        )


# ---- Clear generations (read-only bookkeeping) --------------------------------------------


@admin.register(SessionClearGeneration)
class SessionClearGenerationAdmin(admin.ModelAdmin):
    list_display = ["session_id", "generation"]
    search_fields = ["=session_id"]
    readonly_fields = ["session_id", "generation"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# ---- Preferred branches (Forkview's own review annotation) --------------------------------


@admin.register(PreferredBranch)
class PreferredBranchAdmin(admin.ModelAdmin):
    """Marked on the review page (which checks the branch exists); here: see and unmark."""

    list_display = ["session_col", "branch_id", "marked_by", "marked_at"]
    search_fields = ["=session_id", "branch_id"]
    readonly_fields = ["session_id", "branch_id", "marked_by", "marked_at"]
    date_hierarchy = "marked_at"

    @admin.display(description="session", ordering="session_id")
    def session_col(self, obj: PreferredBranch) -> SafeString:
        return session_link(obj.session_id)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
