"""Forkview's URLs: sign-in, exports, the live chat, the review pages and the admin."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, register_converter

from conversations import views as conversation_views

from .chat import views as chat_views
from .health import healthz
from .links import SessionIdConverter

# Every id, however hostile, has its own path (dashboard/links.py says how).
register_converter(SessionIdConverter, "sid")

urlpatterns = [
    # For load balancers: no login, says only ok / unavailable (dashboard/health.py).
    path("healthz", healthz, name="healthz"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Exports: the download view of conversations/ under the session-id converter (any id
    # gets its own path), then conversations/urls.py; both before the catch-all session route.
    path(
        "sessions/<sid:session_id>/export/<str:fmt>/",
        conversation_views.session_export,
        name="session_export",
    ),
    path("", include("conversations.urls")),
    # Live chat (dashboard/chat/views.py): before the catch-all session route.
    path("chat/new/", chat_views.chat_new, name="chat_new"),
    path("sessions/<sid:session_id>/chat/", chat_views.session_chat, name="session_chat"),
    # The JSON API at /api/v1/ and the token page (dashboard/api/urls.py).
    path("", include("dashboard.api.urls")),
    path("", include("dashboard.insights.urls")),  # /insights/ (dashboard/insights/)
    # Review pages (dashboard/review/urls.py): the home page and the session routes, whose
    # last one is a catch-all (session ids may contain "/"), so they come after the others.
    path("", include("dashboard.review.urls")),
    path("admin/", admin.site.urls),
]

# A database outage is a 503 with a page saying so; any other uncaught error the 500 page.
handler500 = "dashboard.errors.server_error"
