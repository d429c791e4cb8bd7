"""Turn usage in the admin: one row per (branch, user turn), edited under the session lock.

The form shows ``services.turn_usage_problems`` as its errors; the save is
``services.turn_usage_save`` (non-negative counts, ``total = input + output``, a turn with
items), never the ModelForm's own ``save()``. Which turn a row belongs to is fixed once it
exists: moving it would be a different row.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.forms import Form
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .. import services
from ..models import MessageStructure, TurnUsage
from .base import ModelAdmin, ModelForm
from .display import SessionFilter, changelist_link, column, label_filters, session_link
from .forms import USAGE_NUMBER_FIELDS, TurnUsageForm

__all__ = ["TurnUsageAdmin"]

#: The fields that say which turn a row belongs to (read-only once the row exists).
TURN_FIELDS = ("session_col", "branch_id", "user_turn_number", "turn_rows")


#: The usage rows' own branch column, with the branch filter's bounded options.
UsageBranchFilter = label_filters("")[0]


class TurnUsageAdmin(ModelAdmin[TurnUsage]):
    form = TurnUsageForm
    list_display = (
        "id",
        "session_col",
        column("branch_id", "branch"),
        column("user_turn_number", "turn"),
        "requests",
        column("input_tokens", "input"),
        column("output_tokens", "output"),
        column("total_tokens", "total"),
    )
    list_filter = (SessionFilter, UsageBranchFilter, "created_at")
    search_fields = ("=session__session_id",)
    raw_id_fields = ("session",)
    show_full_result_count = False

    def get_readonly_fields(
        self, request: HttpRequest, obj: TurnUsage | None = None
    ) -> tuple[str, ...]:
        if obj is None:
            return ("created_at",)
        return (*TURN_FIELDS, "created_at")

    def get_fields(self, request: HttpRequest, obj: TurnUsage | None = None) -> tuple[str, ...]:
        if obj is None:
            return TurnUsageForm.Meta.fields
        return (*TURN_FIELDS, *USAGE_NUMBER_FIELDS, "created_at")

    def get_form(
        self,
        request: HttpRequest,
        obj: TurnUsage | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> type[ModelForm[TurnUsage]]:
        readonly = self.get_readonly_fields(request, obj)
        kwargs["fields"] = [f for f in self.get_fields(request, obj) if f not in readonly]
        return super().get_form(request, obj, change, **kwargs)

    # -- saving through the service --

    def save_model(self, request: HttpRequest, obj: TurnUsage, form: Form, change: bool) -> None:
        assert isinstance(form, TurnUsageForm)  # get_form builds on self.form
        data = form.cleaned_data
        saved = services.turn_usage_save(
            session_id=obj.session_id,
            branch_id=obj.branch_id,
            user_turn_number=obj.user_turn_number,
            requests=data["requests"],
            input_tokens=data["input_tokens"],
            output_tokens=data["output_tokens"],
            total_tokens=data.get("total_tokens"),
            input_tokens_details=data.get("input_tokens_details"),
            output_tokens_details=data.get("output_tokens_details"),
        )
        # The admin goes on with ``obj`` (the log entry, the redirect): make it the stored row.
        obj.pk, obj.total_tokens, obj.created_at = saved.pk, saved.total_tokens, saved.created_at
        obj._state.adding, obj._state.db = False, saved._state.db

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # The form checked what the service checks; a refusal here means the data changed
        # in between (say, the turn's items were deleted): say why, write nothing.
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except services.ServiceError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    # -- display --

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
            return format_html("<strong>{}</strong>", "none: this usage belongs to no turn")
        return changelist_link(
            MessageStructure,
            f"{count} item(s)",
            session__session_id__exact=obj.session_id,
            branch_id=obj.branch_id,
            user_turn_number=obj.user_turn_number,
        )
