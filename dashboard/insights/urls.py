"""The insights routes (mounted by ``dashboard/urls.py`` before the review routes)."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("insights/", views.insights, name="insights"),
    path("insights.json", views.insights_json, name="insights_json"),
]
