"""Admin forms: a readable JSON editor for items, and the invariants checked on save."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from django import forms
from django.core.exceptions import ValidationError

from . import services
from .fields import UndecodableJSON
from .models import AgentMessage, MessageStructure, TurnUsage

JSON_TEXTAREA_ATTRS = {
    "rows": 24,
    "cols": 100,
    "spellcheck": "false",
    "class": "vLargeTextField forkview-json",
    "style": "font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; "
    "font-size: 13px; width: 100%; max-width: 60em; white-space: pre; tab-size: 2;",
}


class PrettyJSONField(forms.JSONField):
    """A JSON form field shown indented (2 spaces, keys in stored order, non-ASCII as is).

    A value that does not decode (``UndecodableJSON``) is shown as its raw text, so the
    editor can repair it.
    """

    widget = forms.Textarea(attrs=JSON_TEXTAREA_ATTRS)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        if isinstance(value, UndecodableJSON):
            return str(value)
        return json.dumps(value, indent=2, ensure_ascii=False)

    def bound_data(self, data: Any, initial: Any) -> Any:
        if self.disabled:
            return initial
        if data is None:
            return None
        try:
            return json.loads(data)
        except json.JSONDecodeError:
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
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"{message} (line {exc.lineno}, column {exc.colno}: {exc.msg})."
    except (TypeError, ValueError):
        pass
    return message + "."


class AgentMessageForm(forms.ModelForm):
    message_data = PrettyJSONField(
        label="Item (JSON)",
        help_text=(
            "A Responses-API input item. Saving re-derives message_type and tool_name of its "
            "structure rows; whether it is a user message cannot change (turn numbering)."
        ),
    )

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


class TurnUsageForm(forms.ModelForm):
    input_tokens_details = PrettyJSONField(required=False)
    output_tokens_details = PrettyJSONField(required=False)

    class Meta:
        model = TurnUsage
        fields = ("session", "branch_id", "user_turn_number", *USAGE_NUMBER_FIELDS)
        help_texts: ClassVar[dict[str, str]] = {
            "total_tokens": "Must equal input + output tokens; leave empty to fill it in.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("input_tokens_details", "output_tokens_details"):
            self.fields[name].widget = forms.Textarea(attrs={**JSON_TEXTAREA_ATTRS, "rows": 6})
        for name in ("requests", "input_tokens", "output_tokens"):
            if name in self.fields:
                self.fields[name].required = True
                self.fields[name].min_value = 0
                self.fields[name].widget.attrs["min"] = 0

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        inp, out = cleaned.get("input_tokens"), cleaned.get("output_tokens")
        if inp is None or out is None:
            return cleaned
        total = cleaned.get("total_tokens")
        if total is None:
            cleaned["total_tokens"] = inp + out
            self.instance.total_tokens = inp + out
        else:
            for problem in services.usage_total_problems(
                input_tokens=inp, output_tokens=out, total_tokens=total
            ):
                self.add_error("total_tokens", problem)
        session = cleaned.get("session") or getattr(self.instance, "session", None)
        branch = cleaned.get("branch_id", self.instance.branch_id)
        turn = cleaned.get("user_turn_number", self.instance.user_turn_number)
        if self.instance._state.adding and session is not None and turn is not None:
            exists = MessageStructure.objects.filter(
                session=session, branch_id=branch, user_turn_number=turn
            ).exists()
            if not exists:
                raise ValidationError(
                    f"Branch '{branch}' of session '{session}' has no turn {turn}: usage "
                    "belongs to an existing turn."
                )
        return cleaned


class BranchRenameForm(forms.Form):
    old = forms.CharField(widget=forms.HiddenInput)
    new = forms.CharField(
        label="New branch id",
        max_length=200,
        widget=forms.TextInput(attrs={"class": "vTextField"}),
        help_text="Must never have been used in this session; the old id stays reserved.",
    )

    def clean_new(self) -> str:
        new = self.cleaned_data["new"]
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
        value = self.cleaned_data["new_session_id"]
        if services.session_id_taken(session_id=value):
            raise ValidationError(services.SESSION_EXISTS_ERROR.format(session=value))
        return value
