"""The download URL (``session_export``); the review pages (and the dataset download) have
their own in ``dashboard``."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path(
        "sessions/<path:session_id>/export/<str:fmt>/",
        views.session_export,
        name="session_export",
    ),
]
