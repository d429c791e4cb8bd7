"""Admin forms: a readable JSON editor for items, and the services' checks shown as errors.

The forms only validate: every save goes through ``conversations.services`` (in the
ModelAdmins' ``save_model``), which checks again under the session's writer lock.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from django import forms
from django.contrib.admin.widgets import AdminBigIntegerFieldWidget
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.text import capfirst

from .. import items, services
from ..models import AgentMessage, AgentSession, MessageStructure, TurnUsage
from .base import ModelForm

__all__ = [
    "USAGE_NUMBER_FIELDS",
    "AgentMessageForm",
    "BranchRenameForm",
    "PrettyJSONField",
    "SessionDuplicateForm",
    "TurnUsageForm",
    "invalid_json_message",
]

JSON_TEXTAREA_ATTRS = {
    "rows": 24,
    "cols": 100,
    "spellcheck": "false",
    "class": "vLargeTextField forkview-json",  # styled in static/dashboard/css/admin.css
}


class JSONTextarea(forms.Textarea):
    """The JSON editor: a monospace textarea (its style a file: the CSP allows no inline one)."""

    class Media:
        css: ClassVar[dict[str, list[str]]] = {"all": ["dashboard/css/admin.css"]}


#: The largest value of the SDK's ``INTEGER`` count columns (a ``BigIntegerField``).
COUNT_MAX = 2**63 - 1


class PrettyJSONField(forms.JSONField):
    """A JSON form field shown indented (2 spaces, keys in stored order, non-ASCII as is).

    A value that does not decode (``UndecodableJSON``) is shown as its raw text, so the
    editor can repair it.
    """

    widget = JSONTextarea(attrs=JSON_TEXTAREA_ATTRS)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        if isinstance(value, str) and not items.is_undecodable(value):
            # A JSON string is edited as JSON text (with its quotes), not as what it says;
            # undecodable stored text is shown as it is (dumps_pretty), to be repaired.
            text = json.dumps(value, ensure_ascii=False)
        else:
            text = items.dumps_pretty(value)
        if items.display_text(text) != text and not items.is_undecodable(value):
            # Lone surrogates (from \\ud800 escapes) cannot reach a page: edit them as the
            # escapes they are, so saving the form unchanged keeps the item unchanged.
            try:
                return json.dumps(value, indent=None if isinstance(value, str) else 2)
            except (TypeError, ValueError, RecursionError):
                return text
        return text

    def bound_data(self, data: Any, initial: Any) -> Any:
        if self.disabled:
            return initial
        if data is None:
            return None
        try:
            return items.decode(data)
        except items.DecodeError:
            return forms.fields.InvalidJSONInput(data)

    def to_python(self, value: Any) -> Any:
        if value in self.empty_values and not self.required:
            return None
        try:
            return super().to_python(value)
        except ValidationError as exc:
            raise ValidationError(invalid_json_message(value), code="invalid") from exc


def invalid_json_message(text: Any) -> str:
    """The form error for text that is not JSON, with where the parser gave up."""
    message = "Not valid JSON: check quotes, commas and brackets"
    try:
        items.decode(text)
    except json.JSONDecodeError as exc:
        return f"{message} (line {exc.lineno}, column {exc.colno}: {exc.msg})."
    except (TypeError, ValueError, RecursionError):
        pass
    return message + "."


class AgentMessageForm(ModelForm[AgentMessage]):
    """One item as indented JSON; ``services.message_update_problems`` are its errors.

    ``AgentMessageAdmin.save_model`` stores what ``services.message_update`` did in
    :attr:`update`, which the admin's change message (the history's diff) is made of.
    """

    message_data = PrettyJSONField(
        label="Item (JSON)",
        help_text=(
            "A Responses-API input item. Saving re-derives message_type and tool_name of its "
            "structure rows; whether it is a user message cannot change (turn numbering)."
        ),
    )

    #: Set by the admin's ``save_model``: what the save did.
    update: services.MessageUpdate | None = None

    class Meta:
        model = AgentMessage
        fields = ("message_data",)

    def clean_message_data(self) -> Any:
        item = self.cleaned_data["message_data"]
        problems = services.message_update_problems(message=self.instance, item=item)
        if problems:
            raise ValidationError(problems)
        return item


#: The editable part of a usage row; which turn it belongs to is fixed once it exists.
USAGE_NUMBER_FIELDS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "input_tokens_details",
    "output_tokens_details",
)


def _count(name: str, *, required: bool = True, help_text: str = "") -> forms.IntegerField:
    """The form field of count ``name``: a non-negative integer the SDK's column can hold."""
    column = TurnUsage._meta.get_field(name)
    assert isinstance(column, models.Field)  # a concrete column, not a relation
    return forms.IntegerField(
        label=capfirst(column.verbose_name),
        min_value=0,
        max_value=COUNT_MAX,
        required=required,
        help_text=help_text,
        widget=AdminBigIntegerFieldWidget,  # what the admin gives the model's own field
    )


class TurnUsageForm(ModelForm[TurnUsage]):
    """A turn's usage; ``services.turn_usage_problems`` are its errors.

    ``TurnUsageAdmin.save_model`` stores it with ``services.turn_usage_save``.
    """

    requests = _count("requests")
    input_tokens = _count("input_tokens")
    output_tokens = _count("output_tokens")
    total_tokens = _count(
        "total_tokens",
        required=False,
        help_text="Must equal input + output tokens; leave empty to fill it in.",
    )
    input_tokens_details = PrettyJSONField(
        required=False, widget=JSONTextarea(attrs={**JSON_TEXTAREA_ATTRS, "rows": 6})
    )
    output_tokens_details = PrettyJSONField(
        required=False, widget=JSONTextarea(attrs={**JSON_TEXTAREA_ATTRS, "rows": 6})
    )

    class Meta:
        model = TurnUsage
        fields = (
            "session",
            "branch_id",
            "user_turn_number",
            *USAGE_NUMBER_FIELDS,
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        counts = {name: cleaned.get(name) for name in ("requests", "input_tokens", "output_tokens")}
        if None in counts.values():
            return cleaned  # the field errors say why
        total = cleaned.get("total_tokens")
        on_total = services.usage_total_problems(
            input_tokens=counts["input_tokens"],
            output_tokens=counts["output_tokens"],
            total_tokens=total,
        )
        for problem in services.turn_usage_problems(**counts, total_tokens=total):
            self.add_error("total_tokens" if problem in on_total else None, problem)
        if self.instance._state.adding:
            self._check_turn_exists(cleaned)
        return cleaned

    def _check_turn_exists(self, cleaned: dict[str, Any]) -> None:
        """A new row must belong to a turn with items (the service checks it again)."""
        session: AgentSession | None = cleaned.get("session")
        branch, turn = cleaned.get("branch_id"), cleaned.get("user_turn_number")
        if session is None or branch is None or turn is None:
            return
        exists = MessageStructure.objects.filter(
            session=session, branch_id=branch, user_turn_number=turn
        ).exists()
        if not exists:
            raise ValidationError(
                services.NO_TURN_ERROR.format(branch=branch, session=session.pk, turn=turn)
            )


class BranchRenameForm(forms.Form):
    old = forms.CharField(widget=forms.HiddenInput)
    new = forms.CharField(
        label="New branch id",
        max_length=200,
        widget=forms.TextInput(attrs={"class": "vTextField"}),
        help_text="Must never have been used in this session; the old id stays reserved.",
    )

    def clean_new(self) -> str:
        new: str = self.cleaned_data["new"]
        if not new.strip():
            raise ValidationError(services.BRANCH_BLANK_ERROR)
        return new


class SessionDuplicateForm(forms.Form):
    new_session_id = forms.CharField(
        label="New session id",
        max_length=500,
        widget=forms.TextInput(attrs={"class": "vTextField"}),
    )

    def clean_new_session_id(self) -> str:
        value: str = self.cleaned_data["new_session_id"]
        if services.session_id_taken(session_id=value):
            raise ValidationError(services.SESSION_EXISTS_ERROR.format(session=value))
        return value
