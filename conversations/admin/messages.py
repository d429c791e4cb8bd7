"""Messages and their structure rows in the admin.

A message is edited as indented JSON (``services.message_update`` relabels its structure
rows; a change of the user-turn numbering is refused). Only the last item of a branch can be
deleted (``pop_item`` semantics), so turn numbers never get gaps; structure rows are
otherwise read-only (they are derived data).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import Model
from django.forms import BaseFormSet, Form
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .. import classify, services
from ..models import AgentMessage, MessageStructure
from .base import ModelAdmin
from .display import (
    SessionFilter,
    admin_change_url,
    change_url,
    column,
    fragment,
    item_preview,
    label_filters,
    link,
    review_url,
    session_link,
)
from .forms import AgentMessageForm

__all__ = ["AgentMessageAdmin", "MessageStructureAdmin", "PopDeleteAdmin"]

_M = TypeVar("_M", bound=Model)


class PopDeleteAdmin(ModelAdmin[_M]):
    """Deletes like ``pop_item``: one object at a time, refused with the reason unless allowed.

    Subclasses say why an object cannot go now (``delete_problems``) and delete it through
    a service (``delete_model``); there is no bulk "delete selected" action.
    """

    def delete_problems(self, obj: _M) -> list[str]:
        raise NotImplementedError

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        problems = self.delete_problems(obj) if obj is not None else []
        if obj is not None and problems:
            self.message_user(request, " ".join(problems), messages.ERROR)
            return HttpResponseRedirect(admin_change_url(obj))
        return super().delete_view(request, object_id, extra_context)


class AgentMessageAdmin(PopDeleteAdmin[AgentMessage]):
    form = AgentMessageForm
    list_display = ("id", "session_link_col", "kind", "tool", "preview", "created_at")
    list_display_links = ("id",)
    list_filter = (SessionFilter, *label_filters("structure__", via="message_id"), "created_at")
    search_fields = ("=session__session_id", "message_data")
    fields = ("id", "session_col", "created_at", "structure_rows", "message_data")
    readonly_fields = ("id", "session_col", "created_at", "structure_rows")
    list_select_related = False
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # items are appended by DjangoSession (turn numbering)

    @admin.display(description="session", ordering="session")
    def session_link_col(self, obj: AgentMessage) -> SafeString:
        return session_link(obj.session_id)

    @admin.display(description="session")
    def session_col(self, obj: AgentMessage) -> SafeString:
        url = review_url(obj.session_id)
        if url:
            return format_html("{} ({})", session_link(obj.session_id), link(url, "review"))
        return session_link(obj.session_id)

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
    def structure_rows(self, obj: AgentMessage) -> SafeString:
        rows = [
            {
                "url": admin_change_url(row),
                "branch_id": row.branch_id,
                "sequence_number": row.sequence_number,
                "user_turn_number": row.user_turn_number,
                "message_type": row.message_type,
            }
            for row in obj.structure.order_by("sequence_number")
        ]
        return fragment("agentmessage/_structure_rows.html", {"rows": rows})

    def save_model(self, request: HttpRequest, obj: AgentMessage, form: Form, change: bool) -> None:
        assert isinstance(form, AgentMessageForm)  # self.form: change is the only view
        form.update = services.message_update(
            message_id=obj.pk, item=form.cleaned_data["message_data"]
        )

    def construct_change_message(  # type: ignore[override]  # log_change also takes text
        self,
        request: HttpRequest,
        form: Form,
        formsets: Iterable[BaseFormSet[Any]],
        add: bool = False,
    ) -> str | list[dict[str, dict[str, list[str]]]]:
        update = form.update if isinstance(form, AgentMessageForm) else None
        if update is None:
            return super().construct_change_message(request, form, formsets, add)
        return (
            f"Changed the item JSON ({update.relabelled} structure row(s) relabelled):\n"
            f"{update.diff}"
        )

    def delete_problems(self, obj: AgentMessage) -> list[str]:
        return services.message_delete_problems(message=obj)

    def delete_model(self, request: HttpRequest, obj: AgentMessage) -> None:
        services.message_delete(message_id=obj.pk)


class MessageStructureAdmin(PopDeleteAdmin[MessageStructure]):
    list_display = (
        "id",
        "session_col",
        column("branch_id", "branch"),
        column("sequence_number", "sequence"),
        column("user_turn_number", "turn"),
        "kind",
        "message_col",
    )
    list_filter = (SessionFilter, *label_filters(""), "created_at")
    search_fields = ("=session__session_id", "message__message_data")
    ordering = ("session", "sequence_number")
    fields = (
        "session_col",
        "message_col",
        "branch_id",
        "sequence_number",
        "user_turn_number",
        "branch_turn_number",
        "message_type",
        "tool_name",
        "created_at",
    )
    readonly_fields = fields
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: MessageStructure | None = None
    ) -> bool:
        return False  # derived data: edit the message (labels) or use the branch actions

    @admin.display(description="session", ordering="session")
    def session_col(self, obj: MessageStructure) -> SafeString:
        return session_link(obj.session_id)

    @admin.display(description="type (tool)", ordering="message_type")
    def kind(self, obj: MessageStructure) -> str:
        return f"{obj.message_type} ({obj.tool_name})" if obj.tool_name else obj.message_type

    @admin.display(description="message")
    def message_col(self, obj: MessageStructure) -> SafeString:
        return link(change_url(AgentMessage, obj.message_id), f"#{obj.message_id}")

    def delete_problems(self, obj: MessageStructure) -> list[str]:
        return services.structure_row_delete_problems(row=obj)

    def delete_model(self, request: HttpRequest, obj: MessageStructure) -> None:
        services.structure_row_delete(row_id=obj.pk)
