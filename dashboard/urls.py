from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import chat_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Exports (conversations/urls.py): before the review pages' catch-all session route.
    path("", include("conversations.urls")),
    # Live chat (dashboard/chat_views.py): before the catch-all session route.
    path("chat/new/", chat_views.chat_new, name="chat_new"),
    path("sessions/<path:session_id>/chat/", chat_views.session_chat, name="session_chat"),
    # Review pages. Session ids may contain "/", so the suffixed routes come first.
    path("sessions/<path:session_id>/usage.json", views.session_usage, name="session_usage"),
    path("sessions/<path:session_id>/compare/", views.session_compare, name="session_compare"),
    path("sessions/<path:session_id>/turns/", views.session_turns, name="session_turns"),
    path("sessions/<path:session_id>/prefer/", views.session_prefer, name="session_prefer"),
    path("sessions/<path:session_id>/", views.session_detail, name="session_detail"),
    path("admin/", admin.site.urls),
]
