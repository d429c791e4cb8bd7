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
