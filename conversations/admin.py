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

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from . import classify, services
from .fields import UndecodableJSON
from .forms import AgentMessageForm, BranchRenameForm, SessionDuplicateForm, TurnUsageForm
from .models import (
    MAIN_BRANCH,
    AgentMessage,
    AgentSession,
    BranchReservation,
    MessageStructure,
    SessionClearGeneration,
    TurnUsage,
)

PREVIEW_LENGTH = 90


# ---- Links -------------------------------------------------------------------------------


def review_url(session_id: str) -> str | None:
    """The session's review page, if the review UI is installed."""
    try:
        return reverse("session_detail", args=[session_id])
    except NoReverseMatch:
        return None


def export_url(session_id: str, fmt: str, branch_id: str | None = None) -> str | None:
    try:
        url = reverse("session_export", args=[session_id, fmt])
    except NoReverseMatch:
        return None
    return f"{url}?branch={quote(branch_id)}" if branch_id else url


def admin_change_link(obj: Any, text: Any = None) -> SafeString:
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)])
    return format_html('<a href="{}">{}</a>', url, text if text is not None else obj)


def changelist_link(model: type, text: str, **filters: Any) -> SafeString:
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    query = "&".join(f"{k}={quote(str(v))}" for k, v in filters.items())
    return format_html('<a href="{}?{}">{}</a>', url, SafeString(query), text)


def session_link(session_id: str) -> SafeString:
    url = reverse("admin:conversations_agentsession_change", args=[quote(session_id)])
    return format_html('<a href="{}">{}</a>', url, session_id)


def item_preview(data: Any) -> str:
    if isinstance(data, UndecodableJSON):
        return f"(undecodable) {str(data)[:PREVIEW_LENGTH]}"
    if isinstance(data, dict):
        if "content" in data:
            text = classify.content_preview(data.get("content"), PREVIEW_LENGTH)
        elif data.get("type") == "function_call":
            text = f"{data.get('name')}({data.get('arguments', '')})"
        elif "output" in data:
            text = classify.content_preview(data.get("output"), PREVIEW_LENGTH)
        else:
            text = json.dumps(data, ensure_ascii=False)
    else:
        text = json.dumps(data, ensure_ascii=False)
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
    verbose_name_plural = "messages (edit one to change its JSON)"

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
                '<a href="{}?session={}">usage health</a>',
                reverse("admin:conversations_usage_health"),
                quote(obj.pk),
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
        summaries = services.branch_list(session_id=obj.session_id)
        if not summaries:
            return (
                "No structure rows (plain SQLiteSession data?): use the action "
                "“Build structure rows for messages without any”."
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
            actions = [
                format_html(
                    '<a href="{}?branch={}">rename</a>',
                    reverse("admin:conversations_branch_rename", args=[quote(obj.pk)]),
                    quote(branch),
                )
            ]
            if branch != MAIN_BRANCH:
                actions.append(
                    format_html(
                        '<a href="{}?branch={}">delete</a>',
                        reverse("admin:conversations_branch_delete", args=[quote(obj.pk)]),
                        quote(branch),
                    )
                )
            for fmt, label in (("markdown", "markdown"), ("jsonl", "jsonl")):
                url = export_url(obj.session_id, fmt, branch)
                if url:
                    actions.append(format_html('<a href="{}">{}</a>', url, label))
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
                    summary["created_at"] or "-",
                    format_html_join(" · ", "{}", ((a,) for a in actions)),
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
                self.message_user(request, f"{session.session_id}: {note}.")
            else:
                self.message_user(
                    request, f"{session.session_id}: every message already has structure rows."
                )

    @admin.action(description="Usage health report", permissions=["usage_health"])
    def usage_health_report(self, request: HttpRequest, queryset: QuerySet) -> Any:
        ids = list(queryset.values_list("session_id", flat=True))
        query = "&".join(f"session={quote(i)}" for i in ids)
        return HttpResponseRedirect(f"{reverse('admin:conversations_usage_health')}?{query}")

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

    def _session_or_404(self, request: HttpRequest, object_id: str) -> AgentSession:
        session = get_object_or_404(AgentSession, pk=unquote(object_id))
        if not self.has_view_permission(request, session):
            raise PermissionDenied
        return session

    def _render(self, request: HttpRequest, template: str, **context: Any) -> TemplateResponse:
        return TemplateResponse(
            request,
            template,
            {**self.admin_site.each_context(request), "opts": self.opts, **context},
        )

    def _back_to(self, session: AgentSession) -> HttpResponseRedirect:
        return HttpResponseRedirect(
            reverse("admin:conversations_agentsession_change", args=[quote(session.pk)])
        )

    def branch_rename_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        session = self._session_or_404(request, object_id)
        if not self.has_change_permission(request, session):
            raise PermissionDenied
        initial = {"old": request.GET.get("branch", ""), "new": ""}
        form = BranchRenameForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            old, new = form.cleaned_data["old"], form.cleaned_data["new"]
            try:
                moved = services.branch_rename(session_id=session.pk, old=old, new=new)
            except services.ServiceError as exc:
                form.add_error("new", str(exc))
            else:
                note = f"Renamed branch '{old}' to '{new}' ({moved} structure rows)"
                self.log_change(request, session, note)
                self.message_user(request, note + f"; '{old}' stays reserved.")
                return self._back_to(session)
        return self._render(
            request,
            "admin/conversations/agentsession/branch_form.html",
            title=f"Rename branch “{form['old'].value()}”",
            session=session,
            form=form,
            submit="Rename branch",
        )

    def branch_delete_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        session = self._session_or_404(request, object_id)
        if not self.has_branch_delete_permission(request):
            raise PermissionDenied
        branch = request.POST.get("branch") or request.GET.get("branch", "")
        summary = next(
            (b for b in services.branch_list(session_id=session.pk) if b["branch_id"] == branch),
            None,
        )
        error = None
        if request.method == "POST":
            try:
                services.branch_delete(session_id=session.pk, branch_id=branch)
            except ValueError as exc:
                error = str(exc)
            else:
                note = f"Deleted branch '{branch}' with its usage (id stays reserved)"
                self.log_change(request, session, note)
                self.message_user(request, note + ".")
                return self._back_to(session)
        return self._render(
            request,
            "admin/conversations/agentsession/branch_delete.html",
            title=f"Delete branch “{branch}”",
            session=session,
            branch=branch,
            summary=summary,
            error=error
            or (
                services.BRANCH_MISSING_ERROR.format(branch=branch, session=session.pk)
                if summary is None
                else None
            )
            or ("The 'main' branch cannot be deleted." if branch == MAIN_BRANCH else None),
        )

    def duplicate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        session = self._session_or_404(request, object_id)
        if not self.has_duplicate_permission(request):
            raise PermissionDenied
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
                self.log_change(request, session, f"Duplicated to session '{new_id}'")
                self.message_user(request, f"Copied {copied} message(s) to '{new_id}'.")
                return self._back_to(copy)
        return self._render(
            request,
            "admin/conversations/agentsession/branch_form.html",
            title=f"Duplicate session “{session.pk}”",
            session=session,
            form=form,
            submit="Duplicate",
        )

    def usage_health_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_usage_health_permission(request):
            raise PermissionDenied
        session_ids = request.GET.getlist("session") or None
        report = services.usage_health(session_ids=session_ids)
        return self._render(
            request,
            "admin/conversations/usage_health.html",
            title="Usage health",
            report=report,
            session_ids=session_ids,
            usage_changelist=reverse("admin:conversations_turnusage_changelist"),
            structure_changelist=reverse("admin:conversations_messagestructure_changelist"),
        )


# ---- Messages ----------------------------------------------------------------------------


@admin.register(AgentMessage)
class AgentMessageAdmin(admin.ModelAdmin):
    form = AgentMessageForm
    list_display = ["id", "session_col", "kind", "tool", "preview", "created_at"]
    list_display_links = ["id"]
    list_filter = [
        ("structure__branch_id", admin.AllValuesFieldListFilter),
        ("structure__message_type", admin.AllValuesFieldListFilter),
        ("structure__tool_name", admin.AllValuesFieldListFilter),
        "created_at",
    ]
    search_fields = ["=session__session_id", "message_data"]
    date_hierarchy = "created_at"
    fields = ["id", "session_col", "created_at", "structure_rows", "message_data"]
    readonly_fields = ["id", "session_col", "created_at", "structure_rows"]
    list_select_related = False
    show_full_result_count = False

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time: only a branch's last item
        return actions

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # items are appended by DjangoSession (turn numbering)

    @admin.display(description="session", ordering="session")
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
            "{} (#{}, turn {}, {})",
            (
                (
                    admin_change_link(r, r.branch_id),
                    r.sequence_number,
                    r.user_turn_number,
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

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: Any = None
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        if obj is not None:
            problems = services.message_delete_problems(message=obj)
            if problems:
                self.message_user(request, " ".join(problems), messages.ERROR)
                return HttpResponseRedirect(
                    reverse("admin:conversations_agentmessage_change", args=[quote(obj.pk)])
                )
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request: HttpRequest, obj: AgentMessage) -> None:
        services.message_delete(message_id=obj.pk)


# ---- Structure rows ----------------------------------------------------------------------


@admin.register(MessageStructure)
class MessageStructureAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "session_col",
        "branch_id",
        "sequence_number",
        "user_turn_number",
        "branch_turn_number",
        "message_type",
        "tool_name",
        "message_col",
        "created_at",
    ]
    list_filter = [
        ("branch_id", admin.AllValuesFieldListFilter),
        ("message_type", admin.AllValuesFieldListFilter),
        ("tool_name", admin.AllValuesFieldListFilter),
        "created_at",
    ]
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

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # derived data: edit the message (labels) or use the branch actions

    @admin.display(description="session", ordering="session")
    def session_col(self, obj: MessageStructure) -> SafeString:
        return session_link(obj.session_id)

    @admin.display(description="message")
    def message_col(self, obj: MessageStructure) -> SafeString:
        url = reverse("admin:conversations_agentmessage_change", args=[obj.message_id])
        return format_html('<a href="{}">#{}</a>', url, obj.message_id)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: Any = None
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        if obj is not None:
            problems = services.structure_row_delete_problems(row=obj)
            if problems:
                self.message_user(request, " ".join(problems), messages.ERROR)
                return HttpResponseRedirect(
                    reverse("admin:conversations_messagestructure_change", args=[obj.pk])
                )
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request: HttpRequest, obj: MessageStructure) -> None:
        services.structure_row_delete(row_id=obj.pk)


# ---- Usage -------------------------------------------------------------------------------


@admin.register(TurnUsage)
class TurnUsageAdmin(admin.ModelAdmin):
    form = TurnUsageForm
    list_display = [
        "id",
        "session_col",
        "branch_id",
        "user_turn_number",
        "requests",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "created_at",
    ]
    list_filter = [("branch_id", admin.AllValuesFieldListFilter), "created_at"]
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
        numbers = [
            "requests",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "input_tokens_details",
            "output_tokens_details",
        ]
        if obj is None:
            return ["session", "branch_id", "user_turn_number", *numbers]
        return ["session_col", "branch_id", "user_turn_number", "turn_rows", *numbers, "created_at"]

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
