"""Crafted frames and revoked users on both sockets (issue 12, hole 7).

Through the real ASGI stack (origin check, session-cookie auth, the URL router): a refused
socket that still sends frames, frames that once crashed the consumer (a non-string ``type``,
30,000-deep nesting under the frame limit, a 4,000-digit ``turn``, binary frames), any frame on
the viewers' socket, oversized ids; and a socket whose user loses the permission, is
deactivated or logged out, which must stop at its next frame and run nothing. A consumer that
raised would surface here: ``WebsocketCommunicator`` re-raises the application's exception.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission
from django.contrib.sessions.models import Session
from django.db import connections

from conversations.models import AgentMessage
from conversations.permissions import CHAT, VIEW
from dashboard.asgi import application
from dashboard.chat import consumers, protocol
from tests.support.auth import cookie_header

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 10


@pytest_asyncio.fixture(autouse=True)
async def _drained() -> AsyncIterator[None]:
    yield
    await asyncio.gather(*consumers._RUNNING_TURNS)
    await sync_to_async(connections.close_all)()


@pytest.fixture
def recheck_every_frame(settings: Any) -> None:
    settings.FORKVIEW_SOCKET_AUTH_RECHECK = 0


def _user(django_user_model: Any, username: str, *perms: str) -> Any:
    user = django_user_model.objects.create_user(username=username)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


async def _socket(path: str, cookie: str | None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    return communicator


async def _chat(cookie: str, session_id: str = "s1", branch: str | None = None) -> Any:
    path = f"/ws/chat/{quote(session_id, safe='')}/"
    if branch is not None:
        path += f"?branch={quote(branch, safe='')}"
    communicator = await _socket(path, cookie)
    assert (await communicator.receive_json_from(timeout=TIMEOUT))["type"] == protocol.READY
    return communicator


@pytest_asyncio.fixture
async def chatter(django_user_model: Any) -> tuple[Any, str]:
    user = await sync_to_async(_user)(django_user_model, "chatter", VIEW, CHAT)
    return user, await sync_to_async(cookie_header)(user)


async def _error(communicator: WebsocketCommunicator) -> str:
    message = await communicator.receive_json_from(timeout=TIMEOUT)
    assert message["type"] == protocol.ERROR, message
    return str(message["message"])


async def _closed_with(communicator: WebsocketCommunicator) -> int:
    output = await communicator.receive_output(timeout=TIMEOUT)
    assert output["type"] == "websocket.close", output
    return int(output["code"])


@pytest.mark.parametrize("path", ["/ws/chat/s1/", "/ws/sessions/s1/"])
async def test_refused_socket_that_keeps_sending_is_closed_and_dispatches_nothing(path):
    communicator = await _socket(path, None)
    for frame in ('{"type": "user_message", "text": "hi"}', "[", "x" * 100_000):
        await communicator.send_to(text_data=frame)
    await communicator.send_to(bytes_data=b"\x00\xff")
    assert await _closed_with(communicator) == protocol.CLOSE_UNAUTHENTICATED
    assert await communicator.receive_nothing(timeout=0.3)  # no error, no crash, no turn
    await communicator.disconnect()
    assert not await sync_to_async(AgentMessage.objects.exists)()


CRAFTED = [
    ('{"type": 5}', protocol.ERR_UNKNOWN),
    ('{"type": null, "text": "hi"}', protocol.ERR_UNKNOWN),
    ('{"type": {"user_message": 1}}', protocol.ERR_UNKNOWN),
    ('{"type": "user_message", "text": ["not", "text"]}', protocol.ERR_EMPTY),
    ("[" * 30_000 + "]" * 30_000, protocol.ERR_BAD_JSON),  # 60 KB, under the frame limit
    ('{"type": "fork", "turn": ' + "9" * 4000 + ', "text": "x"}', protocol.ERR_BAD_TURN),
    # past Python's 4,300-digit limit for int(): the JSON parser refuses it
    ('{"type": "fork", "turn": ' + "9" * 5000 + ', "text": "x"}', protocol.ERR_BAD_JSON),
    ('{"type": "fork", "turn": 99999999999, "text": "x"}', protocol.ERR_BAD_TURN),
    ('{"type": "regenerate", "turn": true}', protocol.ERR_BAD_TURN),
    ('{"type": "regenerate", "turn": 1.5}', protocol.ERR_BAD_TURN),
    ('{"type": "user_message", "text": "a\\ud800b"}', protocol.ERR_BAD_TEXT),
    ('{"type": "user_message", "text": "a\\u0000b"}', protocol.ERR_BAD_TEXT),
    ("null", protocol.ERR_BAD_JSON),
    ('"a string"', protocol.ERR_BAD_JSON),
    ("NaN", protocol.ERR_BAD_JSON),
]


async def test_crafted_frames_get_an_error_and_the_socket_stays_usable(chatter, caplog):
    caplog.set_level(logging.INFO)
    _, cookie = chatter
    chat = await _chat(cookie)
    for frame, expected in CRAFTED:
        await chat.send_to(text_data=frame)
        got = await _error(chat)
        assert got.startswith(expected) or got == expected, (frame[:60], got)
    await chat.send_to(bytes_data=b'{"type": "user_message", "text": "hi"}')
    assert await _error(chat) == protocol.ERR_BAD_JSON
    assert await chat.receive_nothing(timeout=0.2)  # still open, nothing queued
    await chat.disconnect()
    assert not await sync_to_async(AgentMessage.objects.exists)()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_the_viewers_socket_answers_every_frame_with_listen_only(django_user_model, caplog):
    caplog.set_level(logging.INFO)
    viewer = await sync_to_async(_user)(django_user_model, "viewer", VIEW)
    communicator = await _socket("/ws/sessions/s1/", await sync_to_async(cookie_header)(viewer))
    for frame in ('{"type": "user_message", "text": "hi"}', "[" * 30_000, "not json"):
        await communicator.send_to(text_data=frame)
        assert await _error(communicator) == protocol.ERR_LISTEN_ONLY
    await communicator.disconnect()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("session_id", "branch"),
    [("s" * 1025, None), ("s1", "b" * 1025), ("s\x00", None), ("s1", "ma\x00in")],
    ids=["long session id", "long branch id", "NUL session id", "NUL branch id"],
)
async def test_bad_ids_are_closed_with_4400(chatter, session_id, branch):
    _, cookie = chatter
    path = f"/ws/chat/{quote(session_id, safe='')}/"
    if branch is not None:
        path += f"?branch={quote(branch, safe='')}"
    communicator = await _socket(path, cookie)
    assert await _closed_with(communicator) == protocol.CLOSE_BAD_REQUEST
    await communicator.disconnect()


def _withdraw_view(user: Any) -> None:
    """Both sockets need ``view`` (chat needs it too)."""
    app_label, codename = VIEW.split(".")
    user.user_permissions.remove(
        Permission.objects.get(content_type__app_label=app_label, codename=codename)
    )


def _deactivate(user: Any) -> None:
    user.is_active = False
    user.save(update_fields=["is_active"])


def _log_out_everywhere(user: Any) -> None:
    Session.objects.all().delete()


@pytest.mark.usefixtures("recheck_every_frame")
@pytest.mark.parametrize(
    ("revoke", "code", "message"),
    [
        (_withdraw_view, protocol.CLOSE_FORBIDDEN, protocol.ERR_FORBIDDEN),
        (_deactivate, protocol.CLOSE_UNAUTHENTICATED, protocol.ERR_LOGGED_OUT),
        (_log_out_everywhere, protocol.CLOSE_UNAUTHENTICATED, protocol.ERR_LOGGED_OUT),
    ],
    ids=["permission withdrawn", "deactivated", "logged out"],
)
async def test_an_open_socket_stops_at_the_next_frame_after_revocation(
    chatter, revoke, code, message
):
    user, cookie = chatter
    chat = await _chat(cookie)
    viewer = await _socket("/ws/sessions/s1/", cookie)
    await sync_to_async(revoke)(user)
    await chat.send_json_to({"type": "user_message", "text": "still here?"})
    assert await _error(chat) == message
    assert await _closed_with(chat) == code
    await viewer.send_to(text_data="{}")
    assert await _error(viewer) == message
    assert await _closed_with(viewer) == code
    for communicator in (chat, viewer):
        await communicator.disconnect()
    assert not await sync_to_async(AgentMessage.objects.exists)()  # no turn ran
