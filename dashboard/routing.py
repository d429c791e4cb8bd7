"""Websocket routes.

Session ids are any string, so they travel percent-encoded (``encodeURIComponent``) and the
routes accept any characters (``path`` converter); the consumers decode the id exactly once.
"""

from django.urls import path

from . import consumers

websocket_urlpatterns: list = [
    path("ws/chat/<path:session_id>/", consumers.ChatConsumer.as_asgi(), name="ws_chat"),
    path(
        "ws/sessions/<path:session_id>/",
        consumers.SessionLiveConsumer.as_asgi(),
        name="ws_session_live",
    ),
]
