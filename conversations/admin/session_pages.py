"""The session admin's own pages: rename and delete a branch, duplicate a session, usage health.

Each page checks its permission, calls one service, records what it did in the admin log
(``LogEntry``) and goes back to the session; a refusal is shown instead of the form.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from .. import services
from ..models import MAIN_BRANCH, AgentSession, MessageStructure, TurnUsage
from .base import DisplaySafeTemplateResponse, ModelAdmin
from .display import model_permission, session_change_url
from .forms import BranchRenameForm, SessionDuplicateForm

__all__ = ["SessionPagesAdmin"]


class SessionPagesAdmin(ModelAdmin[AgentSession]):
    """The extra views of ``AgentSessionAdmin``, their URLs and their permissions."""

    # -- permissions (also the actions' ``permissions=[...]``) --

    def has_duplicate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(model_permission("add", AgentSession))

    def has_branch_delete_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(model_permission("change", AgentSession)) and (
            request.user.has_perm(model_permission("delete", MessageStructure))
        )

    def has_usage_health_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(model_permission("view", TurnUsage))

    # -- URLs --

    def get_urls(self) -> list[URLPattern]:
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

    # -- helpers --

    def _session_or_404(self, request: HttpRequest, object_id: str, allowed: bool) -> AgentSession:
        """The session of an extra view; 403 unless the user may see it and ``allowed``."""
        session = get_object_or_404(AgentSession, pk=unquote(object_id))
        if not (self.has_view_permission(request, session) and allowed):
            raise PermissionDenied
        return session

    def _render(self, request: HttpRequest, template: str, **context: Any) -> TemplateResponse:
        session = context.get("session")
        if session is not None:
            context["session_url"] = session_change_url(session.pk)
        return DisplaySafeTemplateResponse(
            request,
            f"admin/conversations/agentsession/{template}",
            {**self.admin_site.each_context(request), "opts": self.opts, **context},
        )

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
        return HttpResponseRedirect(session_change_url((go_to or session).pk))

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

    # -- the views --

    def branch_rename_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        session = self._session_or_404(request, object_id, self.has_change_permission(request))
        form = BranchRenameForm(request.POST or None, initial={"old": request.GET.get("branch")})
        old = str(form["old"].value() or "")
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
            except services.ServiceError as exc:
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
