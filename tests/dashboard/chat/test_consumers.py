"""The live-chat consumer, driven over ``WebsocketCommunicator`` with a scripted model.

The real ``Runner`` runs every turn (``agents.testing.ScriptedModel`` replaces only the
network); rows are checked through ``DjangoSession`` on the test database.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest
import pytest_asyncio
from agents import Agent
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call
from agents.usage import Usage
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission
from django.db import connections

from conversations.models import MessageStructure, TurnUsage
from conversations.permissions import CHAT, VIEW
from conversations.session import DjangoSession
from dashboard.asgi import application
from dashboard.chat import consumers, protocol
from dashboard.chat.routing import websocket_urlpatterns
from dashboard.demo.tools import calculate, current_time, search_sessions

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 10
_AGENT: dict[str, Agent] = {}


@pytest_asyncio.fixture(autouse=True)
async def _close_worker_connections():
    """Close the worker thread's database connection, so the test database can be dropped."""
    yield
    await asyncio.gather(*consumers._RUNNING_TURNS)
    await sync_to_async(connections.close_all)()


def scripted_agent() -> Agent:
    """The FORKVIEW_AGENT factory the tests point at."""
    return _AGENT["agent"]


def usage(input_tokens: int, output_tokens: int) -> Usage:
    return Usage(
        requests=1,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )


@pytest.fixture
def use_model(settings):
    """Install an agent on a ``ScriptedModel`` with the demo tools; return the model."""

    def install(*steps) -> ScriptedModel:
        model = ScriptedModel(steps)
        _AGENT["agent"] = Agent(
            name="scripted", model=model, tools=[current_time, calculate, search_sessions]
        )
        settings.FORKVIEW_AGENT = f"{__name__}.scripted_agent"
        return model

    yield install
    _AGENT.clear()


def _make_user(django_user_model, username: str, *perms: str):
    user = django_user_model.objects.create_user(username=username, password="pw-123456789")
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return django_user_model.objects.get(pk=user.pk)  # fresh permission cache


@pytest.fixture
def chatter(django_user_model):
    return _make_user(
        django_user_model,
        "chatter",
        CHAT,
        VIEW,
    )


async def open_chat(user, session_id: str, branch: str | None = None) -> WebsocketCommunicator:
    path = f"/ws/chat/{quote(session_id, safe='')}/"
    if branch is not None:
        path += f"?branch={quote(branch, safe='')}"
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    communicator.scope["user"] = user
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    ready = await communicator.receive_json_from(timeout=TIMEOUT)
    assert ready["type"] == "ready"
    return communicator


async def receive_until(communicator, *types: str) -> list[dict]:
    """Every message up to and including the first one whose type is in ``types``."""
    messages = []
    while True:
        message = await communicator.receive_json_from(timeout=TIMEOUT)
        messages.append(message)
        if message["type"] in types:
            return messages


def viewer_part(done: dict) -> dict:
    """A chat's ``turn_complete`` without the chat's extras (what viewers are sent)."""
    return {k: v for k, v in done.items() if k not in protocol.CHAT_TURN_EXTRAS}


async def stored(session_id: str, branch: str = "main") -> list[str]:
    items = await DjangoSession(session_id=session_id, branch_id=branch).get_items()
    return [item.get("type") or item.get("role") for item in items]


# ---- Streaming a turn ------------------------------------------------------------------------


async def test_turn_streams_tool_events_deltas_and_completes(chatter, use_model):
    use_model(
        ModelStep(
            output=[function_call("calculate", {"expression": "2+2*3"}, call_id="c1")],
            usage=usage(20, 5),
        ),
        ModelStep(output=[assistant_message("2+2*3 = 8.")], usage=usage(30, 7)),
    )
    chat = await open_chat(chatter, "s-stream")
    await chat.send_json_to({"type": "user_message", "text": "calculate 2+2*3"})
    messages = await receive_until(chat, "turn_complete", "error")
    await chat.disconnect()

    types = [m["type"] for m in messages]
    assert types[0] == "tool_call" and types[1] == "tool_output"
    assert messages[0] == {
        "type": "tool_call",
        "call_id": "c1",
        "name": "calculate",
        "arguments": '{"expression":"2+2*3"}',
    }
    assert messages[1] == {"type": "tool_output", "call_id": "c1", "output": "8"}
    assert "".join(m["text"] for m in messages if m["type"] == "delta") == "2+2*3 = 8."
    assert {"type": "message", "text": "2+2*3 = 8."} in messages
    done = messages[-1]
    base = ("type", "session_id", "branch_id", "turn", "usage")
    assert {key: done[key] for key in base} == {
        "type": "turn_complete",
        "session_id": "s-stream",
        "branch_id": "main",
        "turn": 1,
        "usage": {"requests": 2, "input_tokens": 50, "output_tokens": 12, "total_tokens": 62},
    }
    # The chat's extras (test_finished_turn.py checks them in detail).
    assert set(done) == {*base, "html", "latency_ms", "ttft_ms", "cost", "trace_id"}
    assert 'data-turn="1"' in done["html"] and done["latency_ms"] >= done["ttft_ms"] >= 0
    assert await stored("s-stream") == ["user", "function_call", "function_call_output", "message"]
    turn_usage = await DjangoSession(session_id="s-stream").get_turn_usage(1)
    assert (turn_usage["input_tokens"], turn_usage["output_tokens"]) == (50, 12)


async def test_second_turn_continues_the_branch_and_counts_turns(chatter, use_model):
    model = use_model([assistant_message("one")], [assistant_message("two")])
    chat = await open_chat(chatter, "s-two")
    for text in ("first", "second"):
        await chat.send_json_to({"type": "user_message", "text": text})
        done = (await receive_until(chat, "turn_complete", "error"))[-1]
    await chat.disconnect()
    assert done["turn"] == 2
    # The second call saw the first turn's history.
    roles = [item.get("role") for item in model.last_call.input]
    assert roles == ["user", "assistant", "user"]
    assert await stored("s-two") == ["user", "message", "user", "message"]


async def test_session_id_is_percent_decoded_once(chatter, use_model):
    use_model([assistant_message("ok")])
    session_id = "team/a b%41?x"
    chat = await open_chat(chatter, session_id, branch="main")
    await chat.send_json_to({"type": "user_message", "text": "hi"})
    done = (await receive_until(chat, "turn_complete", "error"))[-1]
    await chat.disconnect()
    assert done["session_id"] == session_id
    assert await stored(session_id) == ["user", "message"]


# ---- Access ----------------------------------------------------------------------------------


async def _close_code(path: str, user=None) -> int:
    # The validator captured ALLOWED_HOSTS at import (localhost is in the default list).
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    communicator = WebsocketCommunicator(application, path, headers=headers)
    if user is not None:
        communicator.scope["user"] = user
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected  # accepted, then closed with an application code the browser can read
    output = await communicator.receive_output(timeout=TIMEOUT)
    await communicator.disconnect()
    assert output["type"] == "websocket.close"
    return output["code"]


async def test_anonymous_is_closed_with_4401():
    # Through the real stack: origin check, AuthMiddlewareStack (no session cookie).
    assert await _close_code("/ws/chat/s1/") == protocol.CLOSE_UNAUTHENTICATED
    assert await _close_code("/ws/sessions/s1/") == protocol.CLOSE_UNAUTHENTICATED


async def test_missing_permission_is_closed_with_4403(django_user_model):
    viewer = await sync_to_async(_make_user)(django_user_model, "viewer", VIEW)
    nobody = await sync_to_async(_make_user)(django_user_model, "nobody")
    for path, user in (("/ws/chat/s1/", viewer), ("/ws/sessions/s1/", nobody)):
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
        communicator.scope["user"] = user
        assert (await communicator.connect(timeout=TIMEOUT))[0]
        output = await communicator.receive_output(timeout=TIMEOUT)
        assert output == {"type": "websocket.close", "code": protocol.CLOSE_FORBIDDEN}
        await communicator.disconnect()


# ---- Bad input -------------------------------------------------------------------------------


async def test_empty_oversized_and_malformed_messages_get_clear_errors(chatter, use_model):
    model = use_model()
    chat = await open_chat(chatter, "s-bad")
    cases = [
        ({"type": "user_message", "text": "   "}, protocol.ERR_EMPTY),
        ({"type": "user_message"}, protocol.ERR_EMPTY),
        ({"type": "user_message", "text": "x" * (32 * 1024 + 1)}, protocol.ERR_TOO_LARGE),
        ({"type": "user_message", "text": "é" * (16 * 1024 + 1)}, protocol.ERR_TOO_LARGE),
        ({"type": "dance"}, protocol.ERR_UNKNOWN),
        ({"type": ["user_message"]}, protocol.ERR_UNKNOWN),  # unhashable: once a TypeError
        ({"type": "fork", "turn": "2", "text": "x"}, protocol.ERR_BAD_TURN),
        ({"type": "regenerate", "turn": 0}, protocol.ERR_BAD_TURN),
    ]
    for payload, expected in cases:
        await chat.send_json_to(payload)
        assert await chat.receive_json_from(timeout=TIMEOUT) == {
            "type": "error",
            "message": expected,
        }
    await chat.send_to(text_data="not json")
    assert (await chat.receive_json_from(timeout=TIMEOUT))["message"] == protocol.ERR_BAD_JSON
    await chat.send_to(text_data="[1, 2]")
    assert (await chat.receive_json_from(timeout=TIMEOUT))["message"] == protocol.ERR_BAD_JSON
    await chat.send_to(text_data='{"type": "user_message", "text": "' + "y" * 70_000 + '"}')
    assert (await chat.receive_json_from(timeout=TIMEOUT))["message"] == protocol.ERR_TOO_LARGE
    await chat.disconnect()
    assert model.calls == ()
    assert await stored("s-bad") == []


# ---- Faults ----------------------------------------------------------------------------------


async def test_model_error_mid_turn_stores_nothing_and_retry_works(chatter, use_model):
    use_model(
        [function_call("calculate", {"expression": "1+1"}, call_id="c1")],
        RuntimeError("upstream 500"),
        [assistant_message("2")],
    )
    chat = await open_chat(chatter, "s-fail")
    await chat.send_json_to({"type": "user_message", "text": "calculate 1+1"})
    messages = await receive_until(chat, "turn_complete", "error")
    assert [m["type"] for m in messages] == ["tool_call", "tool_output", "error"]
    assert "upstream 500" in messages[-1]["message"]
    assert "Nothing was stored" in messages[-1]["message"]
    # The SDK had already written the user message and the tool step; none of it is stored.
    assert await stored("s-fail") == []
    assert not await MessageStructure.objects.filter(session_id="s-fail").aexists()

    await chat.send_json_to({"type": "user_message", "text": "calculate 1+1"})
    done = (await receive_until(chat, "turn_complete", "error"))[-1]
    await chat.disconnect()
    assert done["type"] == "turn_complete" and done["turn"] == 1
    assert await stored("s-fail") == ["user", "message"]


async def test_model_timeout_stores_nothing(chatter, use_model, settings):
    settings.FORKVIEW_TURN_TIMEOUT = 0.3

    async def slow(call):
        await asyncio.sleep(30)
        return [assistant_message("too late")]

    use_model(ModelStep.respond(slow))
    chat = await open_chat(chatter, "s-slow")
    await chat.send_json_to({"type": "user_message", "text": "hello"})
    error = (await receive_until(chat, "turn_complete", "error"))[-1]
    await chat.disconnect()
    assert error["type"] == "error" and "did not finish within 0.3 s" in error["message"]
    assert await stored("s-slow") == []


def _gated(release: asyncio.Event, started: asyncio.Event, text: str = "done"):
    async def respond(call):
        started.set()
        await release.wait()
        return ModelStep(output=[assistant_message(text)], usage=usage(3, 1))

    return ModelStep.respond(respond)


async def test_two_tabs_on_one_branch_second_gets_busy(chatter, use_model):
    release, started = asyncio.Event(), asyncio.Event()
    use_model(_gated(release, started), [assistant_message("later")])
    tab_a = await open_chat(chatter, "s-busy")
    tab_b = await open_chat(chatter, "s-busy")
    await tab_a.send_json_to({"type": "user_message", "text": "first"})
    await asyncio.wait_for(started.wait(), TIMEOUT)

    await tab_b.send_json_to({"type": "user_message", "text": "second"})
    assert await tab_b.receive_json_from(timeout=TIMEOUT) == {
        "type": "busy",
        "message": protocol.ERR_BUSY,
    }
    await tab_a.send_json_to({"type": "user_message", "text": "again"})  # same tab, too
    assert (await tab_a.receive_json_from(timeout=TIMEOUT))["type"] == "busy"

    release.set()
    done = (await receive_until(tab_a, "turn_complete", "error"))[-1]
    assert done["type"] == "turn_complete" and done["turn"] == 1
    assert await stored("s-busy") == ["user", "message"]
    # The guard is released: tab B can send now.
    await tab_b.send_json_to({"type": "user_message", "text": "second"})
    done = (await receive_until(tab_b, "turn_complete", "error"))[-1]
    assert done["turn"] == 2
    await tab_a.disconnect()
    await tab_b.disconnect()


async def test_other_branch_is_not_busy(chatter, use_model):
    release, started = asyncio.Event(), asyncio.Event()
    use_model(_gated(release, started), [assistant_message("side")])
    tab_a = await open_chat(chatter, "s-branches")
    tab_b = await open_chat(chatter, "s-branches", branch="side")
    await tab_a.send_json_to({"type": "user_message", "text": "main turn"})
    await asyncio.wait_for(started.wait(), TIMEOUT)
    await tab_b.send_json_to({"type": "user_message", "text": "side turn"})
    done_b = (await receive_until(tab_b, "turn_complete", "error"))[-1]
    assert done_b["type"] == "turn_complete" and done_b["branch_id"] == "side"
    release.set()
    done_a = (await receive_until(tab_a, "turn_complete", "error"))[-1]
    assert done_a["branch_id"] == "main"
    await tab_a.disconnect()
    await tab_b.disconnect()
    assert await stored("s-branches") == ["user", "message"]
    assert await stored("s-branches", "side") == ["user", "message"]


async def test_dropped_socket_mid_turn_finishes_and_stores_once(chatter, use_model):
    release, started = asyncio.Event(), asyncio.Event()
    use_model(_gated(release, started, "finished anyway"), [assistant_message("next")])
    chat = await open_chat(chatter, "s-drop")
    await chat.send_json_to({"type": "user_message", "text": "are you there?"})
    await asyncio.wait_for(started.wait(), TIMEOUT)
    await chat.disconnect()  # the tab closes mid-turn

    assert await stored("s-drop") == []  # nothing half-written while the turn runs
    release.set()
    for _ in range(200):
        if await TurnUsage.objects.filter(session_id="s-drop").aexists():
            break
        await asyncio.sleep(0.02)
    assert await stored("s-drop") == ["user", "message"]
    assert await TurnUsage.objects.filter(session_id="s-drop").acount() == 1
    await asyncio.gather(*consumers._RUNNING_TURNS)

    # The guard was released with the finished turn: a new tab continues at turn 2.
    chat = await open_chat(chatter, "s-drop")
    await chat.send_json_to({"type": "user_message", "text": "still there?"})
    done = (await receive_until(chat, "turn_complete", "error"))[-1]
    await chat.disconnect()
    assert done["turn"] == 2
    assert await stored("s-drop") == ["user", "message", "user", "message"]


# ---- Fork (edit and resubmit) and regenerate -----------------------------------------------


async def _two_turns(chat) -> None:
    for text in ("first question", "second question"):
        await chat.send_json_to({"type": "user_message", "text": text})
        assert (await receive_until(chat, "turn_complete", "error"))[-1]["type"] == "turn_complete"


async def test_fork_edits_a_user_turn_on_a_new_branch(chatter, use_model):
    use_model(
        [assistant_message("a1")],
        [assistant_message("a2")],
        [assistant_message("edited answer")],
    )
    chat = await open_chat(chatter, "s-fork")
    await _two_turns(chat)
    await chat.send_json_to({"type": "fork", "turn": 2, "text": "second question, edited"})
    messages = await receive_until(chat, "turn_complete", "error")
    created, done = messages[0], messages[-1]
    assert created["type"] == "branch_created"
    assert created["from_branch"] == "main" and created["turn"] == 2
    new_branch = created["branch_id"]
    assert viewer_part(done) == {
        "type": "turn_complete",
        "session_id": "s-fork",
        "branch_id": new_branch,
        "turn": 2,
        "usage": {"requests": 1, "input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
    }
    # The socket follows the new branch: the next message continues it.
    items = await DjangoSession(session_id="s-fork", branch_id=new_branch).get_items()
    assert [i.get("content") for i in items if i.get("role") == "user"] == [
        "first question",
        "second question, edited",
    ]
    assert await stored("s-fork") == ["user", "message", "user", "message"]  # main untouched
    await chat.disconnect()


async def test_regenerate_resends_the_turns_message_on_a_new_branch(chatter, use_model):
    model = use_model(
        [assistant_message("a1")], [assistant_message("a2")], [assistant_message("a1 again")]
    )
    chat = await open_chat(chatter, "s-regen")
    await _two_turns(chat)
    await chat.send_json_to({"type": "regenerate", "turn": 1})
    messages = await receive_until(chat, "turn_complete", "error")
    assert messages[0]["type"] == "branch_created"
    assert messages[-1]["turn"] == 1 and messages[-1]["branch_id"] == messages[0]["branch_id"]
    assert model.last_call.input == [{"role": "user", "content": "first question"}]

    await chat.send_json_to({"type": "regenerate", "turn": 9})
    error = await chat.receive_json_from(timeout=TIMEOUT)
    assert error["type"] == "error" and "Turn 9" in error["message"]
    await chat.disconnect()
    branches = await DjangoSession(session_id="s-regen").list_branches()
    assert len(branches) == 2
