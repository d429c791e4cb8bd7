"""Django's admin and model-form base classes, generic at run time as django-stubs types them.

django-stubs declares ``ModelAdmin[Model]``, ``TabularInline[Child, Parent]`` and
``ModelForm[Model]``; Django's own classes take no type arguments (``django_stubs_ext`` would
patch them, but it is a lint-only dependency). These thin subclasses accept the arguments at
run time and add nothing else; the type checker sees Django's classes themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from django import forms
from django.contrib import admin
from django.db.models import Model

__all__ = ["ModelAdmin", "ModelForm", "TabularInline"]

_M = TypeVar("_M", bound=Model)
_P = TypeVar("_P", bound=Model)

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin, TabularInline
    from django.forms import ModelForm
else:

    class ModelAdmin(admin.ModelAdmin, Generic[_M]):
        """``admin.ModelAdmin`` taking its model as a type argument."""

    class TabularInline(admin.TabularInline, Generic[_M, _P]):
        """``admin.TabularInline`` taking its (child, parent) models as type arguments."""

    class ModelForm(forms.ModelForm, Generic[_M]):
        """``forms.ModelForm`` taking its model as a type argument."""
