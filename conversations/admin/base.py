"""Django's admin and model-form base classes, generic at run time as django-stubs types them.

django-stubs declares ``ModelAdmin[Model]``, ``TabularInline[Child, Parent]`` and
``ModelForm[Model]``; Django's own classes take no type arguments (``django_stubs_ext`` would
patch them, but it is a lint-only dependency). These thin subclasses accept the arguments at
run time; the type checker sees Django's classes themselves. At run time ``ModelAdmin``'s pages
are also made display-safe (:func:`display_safe`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

from django import forms
from django.contrib import admin
from django.db.models import Model
from django.http import HttpResponse
from django.template.response import TemplateResponse

from conversations.items import display_text

__all__ = [
    "DisplaySafeTemplateResponse",
    "ModelAdmin",
    "ModelForm",
    "TabularInline",
    "display_safe",
]

_M = TypeVar("_M", bound=Model)
_P = TypeVar("_P", bound=Model)
_R = TypeVar("_R", bound=HttpResponse)


class DisplaySafeTemplateResponse(TemplateResponse):
    """A ``TemplateResponse`` whose page is display-safe (``conversations.items.display_text``:
    lone surrogates, NUL and control characters from stored rows shown as U+FFFD)."""

    @property
    def rendered_content(self) -> str:
        return display_text(super().rendered_content)


def display_safe(response: _R) -> _R:
    """``response`` rendered display-safe when it is a (not yet rendered) template response.

    Every admin page of the app goes through here (the base ``ModelAdmin``'s views and the
    session pages), so no stored byte can fail a page with ``UnicodeEncodeError``.
    """
    if isinstance(response, TemplateResponse) and type(response) is TemplateResponse:
        if not response.is_rendered:
            # Swapping the class (not copying) keeps every attribute the admin set on it.
            response.__class__ = DisplaySafeTemplateResponse  # type: ignore[assignment]  # a subclass of the same response type
    return response


if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin, TabularInline
    from django.forms import ModelForm
else:

    class ModelAdmin(admin.ModelAdmin, Generic[_M]):
        """``admin.ModelAdmin`` taking its model as a type argument, its pages display-safe."""

        def changelist_view(self, *args: Any, **kwargs: Any) -> Any:
            return display_safe(super().changelist_view(*args, **kwargs))

        def changeform_view(self, *args: Any, **kwargs: Any) -> Any:
            return display_safe(super().changeform_view(*args, **kwargs))

        def delete_view(self, *args: Any, **kwargs: Any) -> Any:
            return display_safe(super().delete_view(*args, **kwargs))

        def history_view(self, *args: Any, **kwargs: Any) -> Any:
            return display_safe(super().history_view(*args, **kwargs))

    class TabularInline(admin.TabularInline, Generic[_M, _P]):
        """``admin.TabularInline`` taking its (child, parent) models as type arguments."""

    class ModelForm(forms.ModelForm, Generic[_M]):
        """``forms.ModelForm`` taking its model as a type argument."""
