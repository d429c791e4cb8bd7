"""Read-only bookkeeping in the admin: clear generations and preferred-branch marks."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils.safestring import SafeString

from ..models import PreferredBranch, SessionClearGeneration
from .base import ModelAdmin
from .display import session_link

__all__ = ["PreferredBranchAdmin", "SessionClearGenerationAdmin"]


class SessionClearGenerationAdmin(ModelAdmin[SessionClearGeneration]):
    """How many times each session was cleared (the SDK's bookkeeping): look, never touch."""

    list_display = ("session_id", "generation")
    search_fields = ("=session_id",)
    readonly_fields = ("session_id", "generation")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: SessionClearGeneration | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: SessionClearGeneration | None = None
    ) -> bool:
        return False


class PreferredBranchAdmin(ModelAdmin[PreferredBranch]):
    """Marked on the review page (which checks the branch exists); here: see and unmark."""

    list_display = ("session_col", "branch_id", "marked_by", "marked_at")
    search_fields = ("=session_id", "branch_id")
    readonly_fields = ("session_id", "branch_id", "marked_by", "marked_at")
    date_hierarchy = "marked_at"

    @admin.display(description="session", ordering="session_id")
    def session_col(self, obj: PreferredBranch) -> SafeString:
        return session_link(obj.session_id)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: PreferredBranch | None = None
    ) -> bool:
        return False
