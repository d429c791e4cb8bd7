"""The review pages' routes (included by ``dashboard/urls.py`` after the other session routes).

Session ids may contain "/", so the suffixed routes come first and the bare session route,
a catch-all, last.
"""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("sessions/<path:session_id>/usage.json", views.session_usage, name="session_usage"),
    path("sessions/<path:session_id>/compare/", views.session_compare, name="session_compare"),
    path("sessions/<path:session_id>/turns/", views.session_turns, name="session_turns"),
    path("sessions/<path:session_id>/prefer/", views.session_prefer, name="session_prefer"),
    path("sessions/<path:session_id>/", views.session_detail, name="session_detail"),
]
