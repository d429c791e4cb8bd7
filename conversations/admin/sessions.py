"""The session admin: a read-only page of a session's branches, reservations and messages.

Edits happen elsewhere: on a message's own page, through the branch links (rename, delete)
and the actions (duplicate, build structure rows, usage health), whose pages are in
:mod:`.session_pages`. Deleting a session is ``clear_session`` (its reservations stay).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.db.models import Model, QuerySet, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.safestring import SafeString

from .. import classify, services
from ..models import (
    MAIN_BRANCH,
    AgentMessage,
    AgentSession,
    AgentSessionQuerySet,
    BranchReservation,
    MessageStructure,
    SessionClearGeneration,
    SessionSummary,
    TurnUsage,
)
from .base import TabularInline
from .display import (
    admin_change_link,
    changelist_url,
    export_url,
    fragment,
    item_preview,
    label_filters,
    link,
    local_datetime,
    review_url,
    with_query,
)
from .session_pages import SessionPagesAdmin

__all__ = ["SESSION_PAGE_MESSAGES", "AgentSessionAdmin", "MessageInline"]

#: The session page lists this many messages; the messages changelist has them all.
SESSION_PAGE_MESSAGES = 200


def _annotated_count(session: AgentSession, name: str) -> int:
    """A count ``AgentSessionQuerySet.with_counts()`` annotated on ``session``."""
    count: int = getattr(session, name)
    return count


class MessageInline(TabularInline[AgentMessage, AgentSession]):
    model = AgentMessage
    fk_name = "session"
    fields = ("message_link", "kind", "preview", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False
    ordering = ("id",)
    verbose_name_plural = "messages (open one to edit its JSON)"
    # Read-only rows without Django's per-row "message N of ..." caption; at most
    # SESSION_PAGE_MESSAGES rows (see AgentSessionAdmin.get_formset_kwargs).
    template = "admin/conversations/agentsession/message_inline.html"
    max_shown = SESSION_PAGE_MESSAGES

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
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


class BranchedFilter(admin.SimpleListFilter):
    """Sessions with more than one branch, or with one: the session summaries' ``branched``
    (kept by triggers), so no page of the list reads the structure rows."""

    title = "branches"
    parameter_name = "branched"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("1", "more than one"), ("0", "one")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() not in ("0", "1"):
            return queryset
        summaries = SessionSummary.objects.filter(branched=int(self.value() or 0))
        return queryset.filter(pk__in=summaries.values("session_id"))


class AgentSessionAdmin(SessionPagesAdmin):
    list_display = (
        "session_id",
        "message_count",
        "branch_count",
        "created_at",
        "updated_at",
        "review_link",
    )
    list_filter = (
        BranchedFilter,
        *label_filters("structure__", via="session_id")[::2],  # branch and tool
        "updated_at",
    )
    search_fields = ("session_id", "messages__message_data")
    fields = (
        "session_id",
        "created_at",
        "updated_at",
        "links",
        "branches",
        "reservations",
        "clear_generation",
    )
    readonly_fields = fields
    inlines = (MessageInline,)
    actions = ("duplicate_session", "rebuild_structure", "usage_health_report", "delete_selected")
    show_full_result_count = False

    # -- display --

    def get_queryset(self, request: HttpRequest) -> AgentSessionQuerySet:
        queryset = super().get_queryset(request)
        assert isinstance(queryset, AgentSessionQuerySet)  # AgentSession.objects' own class
        return queryset.with_counts()

    @admin.display(description="messages", ordering="message_count")
    def message_count(self, obj: AgentSession) -> int:
        return _annotated_count(obj, "message_count")

    @admin.display(description="branches", ordering="branch_count")
    def branch_count(self, obj: AgentSession) -> int:
        return _annotated_count(obj, "branch_count")

    @admin.display(description="review")
    def review_link(self, obj: AgentSession) -> SafeString | str:
        url = review_url(obj.session_id)
        return link(url, "review") if url else "-"

    @admin.display(description="links")
    def links(self, obj: AgentSession) -> SafeString:
        session = {"session__session_id__exact": obj.pk}
        health = with_query(reverse("admin:conversations_usage_health"), session=obj.pk)
        links = [
            (changelist_url(AgentMessage, **session), "messages"),
            (changelist_url(MessageStructure, **session), "structure rows"),
            (changelist_url(TurnUsage, **session), "usage"),
            (health, "usage health"),
        ]
        url = review_url(obj.session_id)
        if url:
            links.insert(0, (url, "review page"))
        url = export_url(obj.session_id, "json")
        if url:
            links.append((url, "export tree (JSON)"))
        return fragment("agentsession/_links.html", {"links": links})

    @admin.display(description="branches")
    def branches(self, obj: AgentSession) -> SafeString:
        summaries = sorted(  # main first, then as listed (oldest first)
            services.branch_list(session_id=obj.session_id),
            key=lambda b: b["branch_id"] != MAIN_BRANCH,
        )
        tokens = dict(
            TurnUsage.objects.filter(session_id=obj.session_id)
            .values("branch_id")
            .annotate(total=Sum("total_tokens"))
            .values_list("branch_id", "total")
        )
        rows = [
            {
                **summary,
                "rows_url": changelist_url(
                    MessageStructure,
                    session__session_id__exact=obj.pk,
                    branch_id=summary["branch_id"],
                ),
                "tokens": tokens.get(summary["branch_id"]) or 0,
                "first_item": local_datetime(summary["created_at"]),
                "actions": self._branch_actions(obj, summary["branch_id"]),
            }
            for summary in summaries
        ]
        return fragment(
            "agentsession/_branches.html",
            {
                "branches": rows,
                "list_url": changelist_url(AgentSession, session_id__exact=obj.pk),
            },
        )

    def _branch_actions(self, obj: AgentSession, branch: str) -> list[tuple[str, str]]:
        """(url, label) of what can be done with a branch: rename, delete, exports."""
        actions = []
        if branch != MAIN_BRANCH:  # main can be neither renamed nor deleted
            for view, label in (("branch_rename", "rename"), ("branch_delete", "delete")):
                url = reverse(f"admin:conversations_{view}", args=[quote(obj.pk)])
                actions.append((with_query(url, branch=branch), label))
        for fmt in ("markdown", "jsonl"):
            download = export_url(obj.session_id, fmt, branch)
            if download:
                actions.append((download, fmt))
        return actions

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
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
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
        self,
        request: HttpRequest,
        obj: AgentSession,
        inline: admin.options.InlineModelAdmin[Any, Any],
        prefix: str,
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

    # -- deletes: like clear_session (reservations kept, other instances back to main) --

    def delete_model(self, request: HttpRequest, obj: AgentSession) -> None:
        services.session_delete(session_id=obj.session_id)

    def get_deleted_objects(
        self, objs: Sequence[AgentSession] | QuerySet[AgentSession], request: HttpRequest
    ) -> tuple[list[str], dict[str, int], set[str], list[str]]:
        # The tables' own cascade does the deleting (DO_NOTHING on the Python side), so the
        # confirmation page would only count the sessions: count their rows too.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        ids = [obj.pk for obj in objs]
        for model in (AgentMessage, MessageStructure, TurnUsage):
            count = model._default_manager.filter(session_id__in=ids).count()
            if count:
                counts[str(model._meta.verbose_name_plural)] = count
        return deleted, counts, perms_needed, protected

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AgentSession]) -> None:
        for session_id in list(queryset.values_list("session_id", flat=True)):
            services.session_delete(session_id=session_id)

    # -- actions --

    @admin.action(description="Duplicate the selected session", permissions=["duplicate"])
    def duplicate_session(
        self, request: HttpRequest, queryset: QuerySet[AgentSession]
    ) -> HttpResponseRedirect | None:
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
    def rebuild_structure(self, request: HttpRequest, queryset: QuerySet[AgentSession]) -> None:
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
    def usage_health_report(
        self, request: HttpRequest, queryset: QuerySet[AgentSession]
    ) -> HttpResponseRedirect:
        ids = list(queryset.values_list("session_id", flat=True))
        return HttpResponseRedirect(
            with_query(reverse("admin:conversations_usage_health"), session=ids)
        )
