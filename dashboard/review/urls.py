"""The review pages' routes (included by ``dashboard/urls.py`` after the other session routes).

Session ids go through ``<sid:...>`` (``dashboard.links.SessionIdConverter``, registered by
``dashboard/urls.py``): ids holding "/" are written encoded, so no id reaches another route.
Plain paths holding "/" still resolve, so the suffixed routes come first and the bare session
route, a catch-all, last.
"""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("sessions/<sid:session_id>/usage.json", views.session_usage, name="session_usage"),
    path("sessions/<sid:session_id>/compare/", views.session_compare, name="session_compare"),
    path("sessions/<sid:session_id>/turns/", views.session_turns, name="session_turns"),
    path("sessions/<sid:session_id>/prefer/", views.session_prefer, name="session_prefer"),
    path("sessions/<sid:session_id>/", views.session_detail, name="session_detail"),
]
