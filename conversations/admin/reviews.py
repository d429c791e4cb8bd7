"""The review workflow in the admin: score definitions (editable), annotations and the audit
trail (read-only), review statuses (status and assignee) and API tokens (create, revoke).

Writes go through :mod:`conversations.reviews` (review statuses, tokens) or, for score
definitions (configuration the admin owns), through a form that keeps every stored score
valid: :func:`conversations.reviews.definition_problem` in ``clean``, and a definition in use
keeps its kind and whatever its stored scores need (their range, their labels' positions). A
definition in use cannot be deleted (``PROTECT``): the page says so and offers archiving.

Annotations are read-only here: an annotation is changed by its author on the review pages
or through the API (``reviews.annotation_update``), where the authorship rule holds. Staff who
may moderate (``permissions.can_moderate``) may delete them here, one by one or with the
"delete selected" action; each delete goes through ``reviews.annotation_delete`` (audited, the
moderator as actor, with the reason typed on the confirmation page).

A new API token is shown once, on the page answering the form (never stored, never put in a
message cookie or the session); only its digest is kept, and the digest is never displayed.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Max, Min, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from .. import reviews
from ..items import display_text
from ..models import (
    Annotation,
    ApiToken,
    AuditEntry,
    ScoreDefinition,
    ScoreKind,
    SessionReview,
)
from ..permissions import can_moderate
from .base import ModelAdmin, ModelForm
from .display import change_url, changelist_url, link, local_datetime, session_link

__all__ = [
    "AnnotationAdmin",
    "ApiTokenAdmin",
    "AuditEntryAdmin",
    "ScoreDefinitionAdmin",
    "ScoreDefinitionForm",
    "SessionReviewAdmin",
]

#: Characters of a comment shown in the annotation list.
BODY_PREVIEW = 80


def _preview(text: str, limit: int = BODY_PREVIEW) -> str:
    text = display_text(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- Score definitions ------------------------------------------------------------------------


class ScoreDefinitionForm(ModelForm[ScoreDefinition]):
    """A definition's fields, checked by ``reviews.definition_problem``; one in use keeps its
    kind, a range holding its scores, and its labels where its scores point."""

    labels = forms.JSONField(
        required=False,
        help_text='Categorical scores: the labels in order, as a JSON list: ["good", "bad"].',
    )

    class Meta:
        model = ScoreDefinition
        fields = (
            "name",
            "kind",
            "description",
            "min_value",
            "max_value",
            "labels",
            "position",
            "archived",
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        if kind is None or self.errors:
            return data
        labels = data.get("labels")
        if labels is None:
            labels = data["labels"] = []
        problem = reviews.definition_problem(
            kind=kind,
            min_value=data.get("min_value"),
            max_value=data.get("max_value"),
            labels=labels,
        )
        if problem is not None:
            field, message = problem
            self.add_error(field, message)
            return data
        if kind != ScoreKind.NUMERIC:
            data["min_value"] = data["max_value"] = None
        if self.instance.pk is not None:
            self._keep_stored_scores_valid(data)
        return data

    def _keep_stored_scores_valid(self, data: dict[str, Any]) -> None:
        scores = Annotation.objects.filter(definition=self.instance)
        used = scores.aggregate(n=Count("id"), low=Min("value"), high=Max("value"))
        if not used["n"]:
            return
        stored = ScoreDefinition.objects.get(pk=self.instance.pk)
        in_use = f"{used['n']} stored score{'s' if used['n'] != 1 else ''} use this definition"
        if data["kind"] != stored.kind:
            self.add_error("kind", f"{in_use}: its kind cannot change (archive it instead).")
        elif data["kind"] == ScoreKind.NUMERIC:
            if not data["min_value"] <= used["low"] <= used["high"] <= data["max_value"]:
                self.add_error(
                    "max_value",
                    f"{in_use}, from {used['low']:g} to {used['high']:g}: "
                    "the range must still hold them.",
                )
        elif data["kind"] == ScoreKind.CATEGORICAL:
            new = data["labels"]
            for index, label in scores.values_list("value", "label").distinct():
                at = int(index or 0)
                if at >= len(new) or new[at] != label:
                    self.add_error(
                        "labels",
                        f"{in_use}: the label {label!r} must stay at position {at + 1} "
                        "(add new labels at the end).",
                    )
                    return


class ScoreDefinitionAdmin(ModelAdmin[ScoreDefinition]):
    """The scores reviewers give. A definition in use is archived, not deleted."""

    form = ScoreDefinitionForm
    list_display = ("name", "kind", "values_col", "position", "archived", "scores_col")
    list_filter = ("kind", "archived")
    list_editable = ("position",)
    search_fields = ("name",)
    actions = ("archive", "unarchive")
    readonly_fields = ("created_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ScoreDefinition]:
        return super().get_queryset(request).annotate(n_scores=Count("scores"))

    @admin.display(description="values")
    def values_col(self, obj: ScoreDefinition) -> str:
        if obj.kind == ScoreKind.BOOLEAN:
            return "up / down"
        if obj.kind == ScoreKind.NUMERIC:
            return f"{obj.min_value:g} – {obj.max_value:g}" if obj.min_value is not None else ""
        return _preview(" · ".join(str(label) for label in obj.labels or []))

    @admin.display(description="scores", ordering="n_scores")
    def scores_col(self, obj: ScoreDefinition) -> SafeString | int:
        n = int(getattr(obj, "n_scores", 0))
        if not n:
            return 0
        return link(changelist_url(Annotation, definition__id__exact=obj.pk), n)

    @admin.action(description="Archive the selected definitions (hide them from the score bar)")
    def archive(self, request: HttpRequest, queryset: QuerySet[ScoreDefinition]) -> None:
        n = queryset.update(archived=True)
        self.message_user(request, f"Archived {n} definition{'s' if n != 1 else ''}.")

    @admin.action(description="Unarchive the selected definitions")
    def unarchive(self, request: HttpRequest, queryset: QuerySet[ScoreDefinition]) -> None:
        n = queryset.update(archived=False)
        self.message_user(request, f"Unarchived {n} definition{'s' if n != 1 else ''}.")

    def _in_use(self, obj: ScoreDefinition) -> int:
        return Annotation.objects.filter(definition=obj).count()

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        if obj is not None and self.has_delete_permission(request, obj):
            if n := self._in_use(obj):
                self.message_user(
                    request,
                    f"“{obj.name}” cannot be deleted: {n} score{'s' if n != 1 else ''} use it. "
                    "Archive it instead (tick “Archived” and save): it leaves the score bar, "
                    "its scores stay.",
                    messages.WARNING,
                )
                return HttpResponseRedirect(change_url(ScoreDefinition, obj.pk))
        return super().delete_view(request, object_id, extra_context)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ScoreDefinition]) -> None:
        # Reached only after Django's confirmation page, which lists protected definitions
        # and offers no "yes" for them; what is left here is unused.
        super().delete_queryset(request, queryset.filter(scores__isnull=True))


# ---- Annotations and the audit trail (read-only) ----------------------------------------------


class _ReadOnly:
    """No adding, changing or deleting: look only (the view permission)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AnnotationAdmin(_ReadOnly, ModelAdmin[Annotation]):
    """Every score, comment and tag; changed by their authors on the review pages; deleted
    here by moderators (through ``reviews.annotation_delete``: audited, with a reason)."""

    list_display = (
        "kind",
        "target_col",
        "definition",
        "value_col",
        "text_col",
        "author",
        "created_at",
    )
    list_filter = ("kind", "definition", "author")
    search_fields = ("=session_id",)
    search_help_text = "An exact session id."
    list_select_related = ("definition", "author")
    date_hierarchy = "created_at"
    fields = (
        "kind",
        "session_col",
        "branch_id",
        "turn",
        "definition",
        "value_col",
        "label",
        "body",
        "author",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    @admin.display(description="session", ordering="session_id")
    def session_col(self, obj: Annotation) -> SafeString:
        return session_link(obj.session_id)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_moderate(request.user)

    def _reason(self, request: HttpRequest) -> str:
        return str(request.POST.get("reason", ""))[: reviews.MAX_REASON_CHARS + 1]

    def delete_model(self, request: HttpRequest, obj: Annotation) -> None:
        try:
            reviews.annotation_delete(
                user=request.user, annotation_id=obj.pk, reason=self._reason(request)
            )
        except reviews.AnnotationMissing:
            pass  # deleted meanwhile: what the operator asked for
        except reviews.ReviewError as exc:
            raise ValidationError(str(exc)) from exc

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Annotation]) -> None:
        # The "delete selected" action: no reason asked (the single delete page asks one).
        for pk in list(queryset.values_list("pk", flat=True)):
            try:
                reviews.annotation_delete(user=request.user, annotation_id=pk)
            except reviews.AnnotationMissing:
                continue

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {**(extra_context or {}), "max_reason": reviews.MAX_REASON_CHARS}
        try:
            return super().delete_view(request, object_id, context)
        except ValidationError as exc:  # a reason that cannot be stored: back to the form
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    @admin.display(description="on", ordering="session_id")
    def target_col(self, obj: Annotation) -> SafeString:
        """``session › branch › turn n``: the session linked to its admin page."""
        where = obj.branch_id and (
            f"{obj.branch_id} › turn {obj.turn}" if obj.turn else f"{obj.branch_id} (branch)"
        )
        if not where:
            return format_html("{} (session)", session_link(obj.session_id))
        return format_html("{} › {}", session_link(obj.session_id), display_text(where))

    @admin.display(description="value")
    def value_col(self, obj: Annotation) -> str:
        if obj.value is None or obj.definition is None:
            return "–"
        if obj.definition.kind == ScoreKind.BOOLEAN:
            return "up" if obj.value else "down"
        if obj.definition.kind == ScoreKind.CATEGORICAL:
            return obj.label
        return f"{obj.value:g}"

    @admin.display(description="text")
    def text_col(self, obj: Annotation) -> str:
        return _preview(obj.label if obj.kind == "tag" else obj.body)


class AuditEntryAdmin(_ReadOnly, ModelAdmin[AuditEntry]):
    """Who changed which annotation or review status, when, from what to what."""

    list_display = ("at", "actor", "action", "kind", "session_col", "object_id")
    list_filter = ("action", "kind", "actor")
    search_fields = ("=session_id",)
    search_help_text = "An exact session id."
    list_select_related = ("actor",)
    date_hierarchy = "at"
    fields = (
        "at",
        "actor",
        "action",
        "kind",
        "session_col",
        "object_id",
        "before_col",
        "after_col",
    )
    readonly_fields = fields

    @admin.display(description="session", ordering="session_id")
    def session_col(self, obj: AuditEntry) -> SafeString:
        return session_link(obj.session_id)

    @admin.display(description="before")
    def before_col(self, obj: AuditEntry) -> SafeString:
        return _json_block(obj.before)

    @admin.display(description="after")
    def after_col(self, obj: AuditEntry) -> SafeString:
        return _json_block(obj.after)


def _json_block(value: Any) -> SafeString:
    if value is None:
        return mark_safe("<span>–</span>")  # a constant
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    return format_html('<pre style="margin:0">{}</pre>', display_text(text))


# ---- Review statuses -------------------------------------------------------------------------


class SessionReviewForm(ModelForm[SessionReview]):
    class Meta:
        model = SessionReview
        fields = ("status", "assignee")


class SessionReviewAdmin(ModelAdmin[SessionReview]):
    """Sessions' review statuses and assignees (set through ``reviews.review_status_set``,
    audited). A session without a row is unreviewed; rows come from the review pages."""

    form = SessionReviewForm
    list_display = ("session_id", "status", "assignee", "updated_by", "updated_at")
    list_filter = ("status", "assignee")
    search_fields = ("=session_id",)
    search_help_text = "An exact session id."
    list_select_related = ("assignee", "updated_by")
    readonly_fields = ("session_col", "updated_by", "updated_at")
    fields = ("session_col", "status", "assignee", "updated_by", "updated_at")

    @admin.display(description="session", ordering="session_id")
    def session_col(self, obj: SessionReview) -> SafeString:
        return session_link(obj.session_id)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: SessionReview, form: Any, change: bool) -> None:
        try:
            reviews.review_status_set(
                user=request.user,
                session_id=obj.session_id,
                status=form.cleaned_data["status"],
                assignee=form.cleaned_data["assignee"],
            )
        except reviews.ReviewError as exc:  # the session went meanwhile
            self.message_user(request, str(exc), messages.ERROR)


# ---- API tokens ------------------------------------------------------------------------------


class ApiTokenAddForm(ModelForm[ApiToken]):
    """A new token: whose, and what for. The token itself is made by ``reviews.token_create``."""

    class Meta:
        model = ApiToken
        fields = ("user", "name")

    def clean_name(self) -> str:
        name = str(self.cleaned_data.get("name") or "").strip()
        if not name:
            raise forms.ValidationError("Give the token a name (what uses it).")
        try:  # the rules token_create applies, checked before anything is written
            reviews.check_text(name, "name")
        except reviews.ReviewError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return name


class TokenStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "active"), ("revoked", "revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


class ApiTokenAdmin(ModelAdmin[ApiToken]):
    """Personal API tokens. Created here or by their owner; shown once; revoked, not deleted."""

    list_display = ("name", "user", "prefix_col", "created_at", "last_used_at", "state_col")
    list_filter = (TokenStateFilter,)
    search_fields = ("name", "user__username", "prefix")
    list_select_related = ("user",)
    actions = ("revoke",)
    readonly_fields = ("user", "prefix_col", "created_at", "last_used_at", "revoked_at")
    fields = ("name", "user", "prefix_col", "created_at", "last_used_at", "revoked_at")

    def get_form(
        self, request: HttpRequest, obj: ApiToken | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> Any:
        return ("user", "name") if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> Any:
        return () if obj is None else self.readonly_fields

    @admin.display(description="token")
    def prefix_col(self, obj: ApiToken) -> str:
        return f"{obj.prefix}…"

    @admin.display(description="state", ordering="revoked_at")
    def state_col(self, obj: ApiToken) -> SafeString:
        if obj.revoked_at is None:
            return mark_safe('<span class="forkview-active">active</span>')  # a constant
        return format_html("revoked {}", local_datetime(obj.revoked_at))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoked tokens stay listed

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        n = 0
        for token in queryset.filter(revoked_at__isnull=True):
            reviews.token_revoke(token=token)
            n += 1
        self.message_user(request, f"Revoked {n} token{'s' if n != 1 else ''}.")

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            # Only the name changes here; the user, the digest and the dates stay.
            ApiToken.objects.filter(pk=obj.pk).update(name=obj.name)
            return
        token, raw = reviews.token_create(
            user=form.cleaned_data["user"], name=form.cleaned_data["name"]
        )
        obj.pk, obj.prefix, obj.digest = token.pk, token.prefix, token.digest
        obj.created_at = token.created_at
        obj._state.adding = False
        request._forkview_new_token = raw  # type: ignore[attr-defined]  # read by response_add

    def response_add(
        self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None
    ) -> HttpResponse:
        raw = getattr(request, "_forkview_new_token", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        response = TemplateResponse(
            request,
            "admin/conversations/apitoken/created.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "API token created",
                "token": obj,
                "raw": raw,
                "change_url": change_url(ApiToken, obj.pk),
            },
        )
        response["Cache-Control"] = "no-store"
        return response
