"""The ASGI application that daphne serves: HTTP through Django, websockets through Channels."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from channels.routing import ProtocolTypeRouter
from channels.testing import HttpCommunicator, WebsocketCommunicator

from dashboard.asgi import application


def test_application_routes_http_and_websocket():
    assert isinstance(application, ProtocolTypeRouter)
    assert {"http", "websocket"} <= set(application.application_mapping)


async def _get(path: str) -> dict:
    # "testserver" is in ALLOWED_HOSTS during tests (django.test.utils.setup_test_environment).
    communicator = HttpCommunicator(application, "GET", path, headers=[(b"host", b"testserver")])
    return await communicator.get_response(timeout=10)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_home_page_over_asgi_http():
    """GET / renders (or, once the pages need a login, redirects to a login page that renders)."""
    response = await _get("/")
    headers = {name.lower(): value for name, value in response["headers"]}
    if response["status"] in (301, 302, 303, 307, 308):
        location = urlsplit(headers[b"location"].decode())
        response = await _get(location.path + (f"?{location.query}" if location.query else ""))
        headers = {name.lower(): value for name, value in response["headers"]}
    assert response["status"] == 200, response["body"][:500]
    assert headers[b"content-type"].startswith(b"text/html")
    assert b"<h1" in response["body"] or b"<form" in response["body"]
    assert b"Forkview" in response["body"]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_websocket_from_a_foreign_origin_is_refused():
    """AllowedHostsOriginValidator guards every websocket route (no cross-site websockets).

    Database access is allowed because every Channels consumer, the denier included, closes
    stale database connections when it dispatches a message.
    """
    communicator = WebsocketCommunicator(
        application, "/ws/anything/", headers=[(b"origin", b"https://evil.example")]
    )
    connected, _ = await communicator.connect(timeout=5)
    assert not connected
    await communicator.disconnect()
