"""Forkview's URLs: sign-in, exports, the live chat, the review pages and the admin."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from .chat import views as chat_views

urlpatterns = [
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Exports (conversations/urls.py): before the review pages' catch-all session route.
    path("", include("conversations.urls")),
    # Live chat (dashboard/chat/views.py): before the catch-all session route.
    path("chat/new/", chat_views.chat_new, name="chat_new"),
    path("sessions/<path:session_id>/chat/", chat_views.session_chat, name="session_chat"),
    # Review pages (dashboard/review/urls.py): the home page and the session routes, whose
    # last one is a catch-all (session ids may contain "/"), so they come after the others.
    path("", include("dashboard.review.urls")),
    path("admin/", admin.site.urls),
]
