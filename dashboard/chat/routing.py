"""Websocket routes (mounted by ``dashboard.asgi``).

Session ids are any string, so they travel percent-encoded (``encodeURIComponent``) and the
routes accept any characters (``path`` converter); the consumers decode the id exactly once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from channels.consumer import AsyncConsumer
from django.urls import path

from . import consumers

if TYPE_CHECKING:
    from channels.routing import URLRouter, _ExtendedURLPattern

__all__ = ["websocket_urlpatterns"]


def _route(route: str, consumer: type[AsyncConsumer], name: str) -> _ExtendedURLPattern:
    """A websocket route: Django's ``path()`` with an ASGI application where a view would go.

    Channels' ``URLRouter`` reads such patterns; Django's stubs know only views, hence the
    ignore and the cast to the pattern type Channels' stubs expect.
    """
    pattern = path(route, consumer.as_asgi(), name=name)  # type: ignore[arg-type]
    return cast("_ExtendedURLPattern", pattern)


websocket_urlpatterns: list[_ExtendedURLPattern | URLRouter] = [
    _route("ws/chat/<path:session_id>/", consumers.ChatConsumer, "ws_chat"),
    _route("ws/sessions/<path:session_id>/", consumers.SessionLiveConsumer, "ws_session_live"),
]
