"""Live updates for a session's viewers (``/ws/sessions/<id>/``, ``SessionLiveConsumer``).

A chat on the session stores a turn; everyone watching the session gets ``turn_complete``
(and ``branch_created`` for a fork) on their socket: in one process through the in-memory
channel layer, and across processes through Redis, where the chat runs in another OS process
(``live_driver``) and the viewer is here. Sockets go through the real ASGI application
(origin check, session-cookie auth, routing); the chat runs the offline model at full speed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import pytest_asyncio
from agents import Agent
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission
from django.db import connections

from conversations.permissions import APP_LABEL, CHAT_CODENAME, VIEW_CODENAME
from conversations.session import DjangoSession
from dashboard.asgi import application
from dashboard.chat import consumers, protocol
from dashboard.demo.model import OfflineModel
from dashboard.settings import redis_channel_layer
from tests.support.auth import cookie_header
from tests.support.databases import database_url

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT = 10
DRIVER_TIMEOUT = 120  # a fresh process sets Django and the SDK up first (slow on a busy CI)
QUIET = 0.3  # seconds a socket must stay silent to count as "received nothing"
IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
needs_redis = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="REDIS_URL is not set (no Redis server)"
)


def viewer_part(done: dict) -> dict:
    """A chat's ``turn_complete`` without the chat's extras (what viewers are sent)."""
    return {k: v for k, v in done.items() if k not in protocol.CHAT_TURN_EXTRAS}


@pytest_asyncio.fixture(autouse=True)
async def _close_worker_connections():
    """Let detached turns finish, then close the worker thread's database connection."""
    yield
    await asyncio.gather(*consumers._RUNNING_TURNS)
    await sync_to_async(connections.close_all)()


@pytest.fixture(autouse=True)
def _offline_agent(settings):
    settings.FORKVIEW_AGENT = "tests.dashboard.chat.live_driver.offline_agent"


def slow_offline_agent() -> Agent:
    """The offline model at 20 ms a token: a turn of about a second, time to drop a socket."""
    return Agent(name="live, slow", model=OfflineModel(token_delay=0.02))


def _redis_layers() -> dict:
    return {"default": redis_channel_layer(os.environ["REDIS_URL"])}


@pytest.fixture(
    params=[
        pytest.param("memory", id="in-memory"),
        pytest.param("redis", id="redis", marks=needs_redis),
    ]
)
def layer(request, settings):
    """The channel layer of this process (changing the setting resets Channels' layers)."""
    settings.CHANNEL_LAYERS = IN_MEMORY if request.param == "memory" else _redis_layers()
    return request.param


def _make_user(django_user_model, username: str, *codenames: str):
    user = django_user_model.objects.create_user(username=username)  # no password: no hashing
    for codename in codenames:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=APP_LABEL, codename=codename)
        )
    return user


@pytest.fixture
def chatter_cookie(django_user_model) -> str:
    _make_user(django_user_model, "chatter", CHAT_CODENAME, VIEW_CODENAME)
    return cookie_header("chatter")


@pytest.fixture
def viewer_cookie(django_user_model) -> str:
    _make_user(django_user_model, "viewer", VIEW_CODENAME)
    return cookie_header("viewer")


def unique(prefix: str) -> str:
    """A session id no other run shares (Redis groups outlive a test)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _socket(path: str, cookie: str | None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def open_viewer(cookie: str, session_id: str) -> WebsocketCommunicator:
    viewer = _socket(f"/ws/sessions/{quote(session_id, safe='')}/", cookie)
    connected, _ = await viewer.connect(timeout=TIMEOUT)
    assert connected
    return viewer


async def open_chat(cookie: str, session_id: str) -> WebsocketCommunicator:
    chat = _socket(f"/ws/chat/{quote(session_id, safe='')}/", cookie)
    connected, _ = await chat.connect(timeout=TIMEOUT)
    assert connected
    assert (await chat.receive_json_from(timeout=TIMEOUT))["type"] == "ready"
    return chat


async def send_turn(chat: WebsocketCommunicator, message: dict) -> list[dict]:
    """Send one client message; return its ``branch_created`` / ``turn_complete`` replies."""
    await chat.send_json_to(message)
    events = []
    while True:
        reply = await chat.receive_json_from(timeout=TIMEOUT)
        assert reply["type"] not in ("error", "busy"), reply
        if reply["type"] in ("branch_created", "turn_complete"):
            events.append(reply)
        if reply["type"] == "turn_complete":
            return events


async def next_event(viewer: WebsocketCommunicator, seconds: float = TIMEOUT) -> dict:
    """The viewer's next message; a plain failure if none comes.

    On a timeout the communicator cancels the consumer, and with the Redis layer that raises
    a chain of redis-py errors whose traceback can crash pytest's report on Python 3.11
    ("AST constructor recursion depth mismatch"): report the fact, not the chain.
    """
    try:
        return await viewer.receive_json_from(timeout=seconds)
    except Exception as exc:
        pytest.fail(f"the viewer got no event within {seconds} s ({exc!r})", pytrace=False)


async def user_turns(session_id: str, branch: str = "main") -> list[int]:
    turns = await DjangoSession(session_id=session_id, branch_id=branch).get_conversation_turns()
    return [t["turn"] for t in turns]


# ---- One process: the in-memory layer (and Redis, when configured) ---------------------------


@pytest.mark.parametrize("session_id", ["s-live", "team/a b%41?x"])
async def test_viewer_gets_turn_complete_once_the_turn_is_stored(
    layer, chatter_cookie, viewer_cookie, session_id
):
    session_id = unique(session_id)
    viewer = await open_viewer(viewer_cookie, session_id)
    chat = await open_chat(chatter_cookie, session_id)

    for turn in (1, 2):
        [done] = await send_turn(chat, {"type": "user_message", "text": f"hello {turn}"})
        event = await next_event(viewer)
        assert event == viewer_part(done)
        assert event["type"] == "turn_complete"
        assert (event["session_id"], event["branch_id"], event["turn"]) == (
            session_id,
            "main",
            turn,
        )
        assert event["usage"]["requests"] == 1 and event["usage"]["output_tokens"] > 0
        # Sent after the turn was stored: a viewer reloading now sees it.
        assert await user_turns(session_id) == list(range(1, turn + 1))
    assert await viewer.receive_nothing(timeout=QUIET)  # no deltas, nothing twice
    await chat.disconnect()
    await viewer.disconnect()


@needs_redis
@pytest.mark.parametrize("layer", ["redis"], indirect=True)
async def test_sockets_idle_past_the_redis_read_timeout_keep_working(
    layer, chatter_cookie, viewer_cookie
):
    """redis-py's default 5 s socket timeout once crashed every consumer left idle for 5 s
    (channels_redis blocks 5 s in BZPOPMIN); both sockets must outlive it."""
    session_id = unique("s-idle")
    viewer = await open_viewer(viewer_cookie, session_id)
    chat = await open_chat(chatter_cookie, session_id)
    assert await viewer.receive_nothing(timeout=7)  # idle past the read timeout, no crash
    [done] = await send_turn(chat, {"type": "user_message", "text": "still there?"})
    assert (await next_event(viewer)) == viewer_part(done)
    await chat.disconnect()
    await viewer.disconnect()


async def test_viewer_gets_branch_created_then_the_forked_turn(
    layer, chatter_cookie, viewer_cookie
):
    session_id = unique("s-fork")
    chat = await open_chat(chatter_cookie, session_id)
    for text in ("first", "second"):
        await send_turn(chat, {"type": "user_message", "text": text})
    viewer = await open_viewer(viewer_cookie, session_id)  # joins after those turns

    created, done = await send_turn(chat, {"type": "fork", "turn": 2, "text": "second, edited"})
    assert await next_event(viewer) == created
    assert created == {
        "type": "branch_created",
        "session_id": session_id,
        "branch_id": created["branch_id"],
        "from_branch": "main",
        "turn": 2,
    }
    assert created["branch_id"] != "main"
    event = await next_event(viewer)
    assert event == viewer_part(done)
    assert (event["type"], event["branch_id"], event["turn"]) == (
        "turn_complete",
        created["branch_id"],
        2,
    )
    assert await user_turns(session_id, created["branch_id"]) == [1, 2]
    assert await viewer.receive_nothing(timeout=QUIET)
    await chat.disconnect()
    await viewer.disconnect()


async def test_viewer_of_another_session_receives_nothing(layer, chatter_cookie, viewer_cookie):
    session_id = unique("s-watched")
    watching = await open_viewer(viewer_cookie, session_id)
    elsewhere = await open_viewer(viewer_cookie, f"{session_id}-other")
    chat = await open_chat(chatter_cookie, session_id)

    await send_turn(chat, {"type": "user_message", "text": "hi"})
    assert (await next_event(watching))["type"] == "turn_complete"
    assert await elsewhere.receive_nothing(timeout=QUIET)
    for socket in (chat, watching, elsewhere):
        await socket.disconnect()


async def test_viewer_still_gets_the_turn_when_the_chat_socket_drops_mid_turn(
    layer, chatter_cookie, viewer_cookie, settings
):
    settings.FORKVIEW_AGENT = f"{__name__}.slow_offline_agent"
    session_id = unique("s-drop")
    viewer = await open_viewer(viewer_cookie, session_id)
    chat = await open_chat(chatter_cookie, session_id)
    await chat.send_json_to({"type": "user_message", "text": "are you there?"})
    assert (await chat.receive_json_from(timeout=TIMEOUT))["type"] == "delta"
    await chat.disconnect()  # the tab closes mid-turn

    event = await next_event(viewer)
    assert (event["type"], event["session_id"], event["turn"]) == ("turn_complete", session_id, 1)
    assert await user_turns(session_id) == [1]
    await viewer.disconnect()


@pytest.mark.parametrize(
    ("who", "code"),
    [("chat-only user", protocol.CLOSE_FORBIDDEN), ("anonymous", protocol.CLOSE_UNAUTHENTICATED)],
)
async def test_viewer_without_view_permission_is_closed_and_gets_nothing(
    layer, chatter_cookie, django_user_model, who, code
):
    cookie = None
    if who == "chat-only user":  # may chat, may not browse sessions
        await sync_to_async(_make_user)(django_user_model, "chat-only", CHAT_CODENAME)
        cookie = await sync_to_async(cookie_header)("chat-only")
    session_id = unique("s-private")
    refused = _socket(f"/ws/sessions/{session_id}/", cookie)
    assert (await refused.connect(timeout=TIMEOUT))[0]  # accepted, then closed with a code
    assert await refused.receive_output(timeout=TIMEOUT) == {
        "type": "websocket.close",
        "code": code,
    }

    chat = await open_chat(chatter_cookie, session_id)
    await send_turn(chat, {"type": "user_message", "text": "secret"})
    assert await refused.receive_nothing(timeout=QUIET)  # never joined the session's group
    await chat.disconnect()
    await refused.disconnect()


# ---- Two processes: Redis ------------------------------------------------------------------


@needs_redis
async def test_viewer_here_gets_events_of_a_chat_run_in_another_process(
    settings, chatter_cookie, viewer_cookie
):
    """The chat runs in ``live_driver`` (its own Django, its own event loop, same database and
    Redis); the viewer in this process hears its turn and its fork through the Redis layer."""
    settings.CHANNEL_LAYERS = _redis_layers()
    session_id = unique("s-cross")
    viewer = await open_viewer(viewer_cookie, session_id)
    elsewhere = await open_viewer(viewer_cookie, f"{session_id}-other")
    messages = [
        {"type": "user_message", "text": "calculate 6*7"},
        {"type": "fork", "turn": 1, "text": "calculate 6*8"},
    ]
    env = {
        **os.environ,
        "DATABASE_URL": database_url(django_settings.DATABASES["default"]),
        "FORKVIEW_AGENT": "tests.dashboard.chat.live_driver.offline_agent",
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    driver = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.dashboard.chat.live_driver",
        "chatter",
        session_id,
        json.dumps(messages),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(driver.communicate(), DRIVER_TIMEOUT)
    finally:
        if driver.returncode is None:
            driver.kill()
            await driver.wait()
    assert driver.returncode == 0, err.decode()[-3000:]
    sent = json.loads(out.decode().strip().splitlines()[-1])
    # The driver saw each turn_complete after its notification went out: the events are
    # on their way to (or already at) the viewer.
    received = [await next_event(viewer) for _ in range(3)]
    assert received == sent  # the same events, in order
    first, created, forked = received
    assert (first["type"], first["session_id"], first["branch_id"], first["turn"]) == (
        "turn_complete",
        session_id,
        "main",
        1,
    )
    assert (created["type"], created["from_branch"], created["turn"]) == (
        "branch_created",
        "main",
        1,
    )
    assert (forked["type"], forked["branch_id"], forked["turn"]) == (
        "turn_complete",
        created["branch_id"],
        1,
    )
    assert await viewer.receive_nothing(timeout=QUIET)
    assert await elsewhere.receive_nothing(timeout=QUIET)
    # The other process stored both turns in this test's database.
    assert await user_turns(session_id) == [1]
    assert await user_turns(session_id, created["branch_id"]) == [1]
    await viewer.disconnect()
    await elsewhere.disconnect()
