"""Cancelling a running chat turn (``cancel`` -> ``cancelled``), over ``WebsocketCommunicator``.

The real ``Runner`` runs the demo agent on the offline model, slowed down
(``FORKVIEW_OFFLINE_TOKEN_DELAY_MS``) so a turn is still streaming when the test cancels it;
the gated scripted model of ``test_consumers`` holds a turn before its first token. What is
checked is what the database holds afterwards (nothing of the cancelled turn: no item, no usage
row, the branch unchanged), that the branch's turn guard and the user's slot are free again,
that viewers heard of no turn, and that the socket takes the next message.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from conversations.models import AgentSpan, AgentTrace, MessageStructure, TurnUsage
from conversations.session import DjangoSession
from dashboard import agents
from dashboard.chat import protocol
from dashboard.chat.locks import turn_guard
from dashboard.chat.turns import OUTCOME_KEY
from tests.dashboard.chat import test_consumers as base
from tests.dashboard.chat.test_consumers import (
    TIMEOUT,
    _gated,
    _make_user,
    open_chat,
    receive_until,
    stored,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

# test_consumers' fixtures: the user, the scripted model, the worker-connection clean-up.
chatter = base.chatter
use_model = base.use_model
_close_worker_connections = base._close_worker_connections

SLOW_TOKEN_MS = 40


@pytest.fixture
def slow_demo(settings, monkeypatch):
    """The demo agent on the offline model, each streamed token ``SLOW_TOKEN_MS`` apart."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings.FORKVIEW_AGENT = "dashboard.agents.demo_agent"
    settings.FORKVIEW_OFFLINE_TOKEN_DELAY_MS = SLOW_TOKEN_MS
    settings.FORKVIEW_MAX_TURNS_PER_USER = 1  # the user's only slot: a leak would block


@sync_to_async
def _rows(session_id: str) -> tuple[int, int]:
    return (
        MessageStructure.objects.filter(session_id=session_id).count(),
        TurnUsage.objects.filter(session_id=session_id).count(),
    )


async def _first_turn(chat, text: str = "hello") -> dict:
    await chat.send_json_to({"type": "user_message", "text": text})
    done = (await receive_until(chat, "turn_complete", "error", "cancelled"))[-1]
    assert done["type"] == "turn_complete", done
    return done


async def test_cancel_mid_stream_stores_nothing_and_the_socket_goes_on(chatter, slow_demo):
    sid = "s-cancel"
    layer = get_channel_layer()
    viewer = await layer.new_channel()
    chat = await open_chat(chatter, sid)
    await _first_turn(chat, "hello")
    before_items = await DjangoSession(session_id=sid).get_items()
    before_rows = await _rows(sid)
    await layer.group_add(protocol.group_name(sid), viewer)

    # A tool call, its output, then the answer streams slowly: cancel mid-answer.
    await chat.send_json_to({"type": "user_message", "text": "calculate 2+2*3"})
    seen = await receive_until(chat, "delta")
    assert [m["type"] for m in seen][:2] == ["tool_call", "tool_output"]
    await chat.send_json_to({"type": "cancel"})
    rest = await receive_until(chat, "cancelled", "turn_complete", "error")
    assert rest[-1] == {"type": "cancelled", "session_id": sid, "branch_id": "main"}
    assert {m["type"] for m in rest[:-1]} <= {"delta"}  # no turn_complete, no error

    # Nothing of the turn: not the user message, not the tool step, no usage row.
    assert await DjangoSession(session_id=sid).get_items() == before_items
    assert await _rows(sid) == before_rows
    assert await stored(sid) == ["user", "message"]
    # Viewers were told of no turn.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(viewer), 0.3)
    # The guard and the user's only slot are free: the same socket runs the next turn,
    # numbered 2 (the cancelled one left no number behind).
    done = await _first_turn(chat, "calculate 1+1")
    assert done["turn"] == 2
    assert await stored(sid) == ["user", "message", "user", "function_call"] + [
        "function_call_output",
        "message",
    ]
    await chat.disconnect()


async def test_cancelled_turn_keeps_its_trace_unlinked_from_any_turn(chatter, slow_demo):
    """The cancelled run's trace (tokens were spent) stays, linked to the session and branch
    only, marked ``forkview_outcome: cancelled``; turn 1 is the next stored turn's."""
    sid = "s-cancel-trace"
    chat = await open_chat(chatter, sid)
    await chat.send_json_to({"type": "user_message", "text": "tell me a story"})
    await receive_until(chat, "delta")
    await chat.send_json_to({"type": "cancel"})
    assert (await receive_until(chat, "cancelled", "turn_complete"))[-1]["type"] == "cancelled"
    done = await _first_turn(chat, "hello")
    await chat.disconnect()
    processor = agents.tracing_processor()
    assert processor is not None
    await asyncio.to_thread(processor.force_flush)

    @sync_to_async
    def traces() -> list[tuple[str | None, str | None, int | None, str | None]]:
        return [
            (t.session_id, t.branch_id, t.turn, (t.metadata or {}).get(OUTCOME_KEY))
            for t in AgentTrace.objects.filter(group_id=sid).order_by("started_at")
        ]

    assert await traces() == [(sid, "main", None, "cancelled"), (sid, "main", 1, None)]
    assert done["trace_id"] == (
        await sync_to_async(lambda: AgentTrace.objects.get(turn=1, session_id=sid).trace_id)()
    )


async def test_cancel_before_the_first_token(chatter, use_model):
    release, started = asyncio.Event(), asyncio.Event()
    use_model(_gated(release, started, "never shown"), _gated(asyncio.Event(), started))
    chat = await open_chat(chatter, "s-cancel-early")
    await chat.send_json_to({"type": "user_message", "text": "first"})
    await asyncio.wait_for(started.wait(), TIMEOUT)
    await chat.send_json_to({"type": "cancel"})
    assert await chat.receive_json_from(timeout=TIMEOUT) == {
        "type": "cancelled",
        "session_id": "s-cancel-early",
        "branch_id": "main",
    }
    release.set()  # the model's call was cancelled: releasing it changes nothing
    await asyncio.sleep(0.1)
    assert await stored("s-cancel-early") == []
    assert await _rows("s-cancel-early") == (0, 0)
    # The branch's guard is free (another holder gets it at once).
    async with turn_guard("s-cancel-early", "main") as acquired:
        assert acquired
    await chat.disconnect()


async def test_cancel_without_a_running_turn_is_an_error_and_harmless(chatter, slow_demo):
    chat = await open_chat(chatter, "s-cancel-idle")
    await chat.send_json_to({"type": "cancel"})
    assert await chat.receive_json_from(timeout=TIMEOUT) == protocol.error(
        protocol.ERR_NOTHING_TO_CANCEL
    )
    done = await _first_turn(chat, "hello")
    assert done["turn"] == 1
    await chat.send_json_to({"type": "cancel"})  # after the turn: nothing to cancel either
    assert await chat.receive_json_from(timeout=TIMEOUT) == protocol.error(
        protocol.ERR_NOTHING_TO_CANCEL
    )
    assert await stored("s-cancel-idle") == ["user", "message"]
    await chat.disconnect()


async def test_another_socket_cannot_cancel_your_turn(chatter, slow_demo, django_user_model):
    from conversations.permissions import CHAT, VIEW

    other = await sync_to_async(_make_user)(django_user_model, "other", CHAT, VIEW)
    mine = await open_chat(chatter, "s-cancel-mine")
    theirs = await open_chat(other, "s-cancel-mine")
    my_second_tab = await open_chat(chatter, "s-cancel-mine")
    await mine.send_json_to({"type": "user_message", "text": "tell me a story"})
    await receive_until(mine, "delta")
    for socket in (theirs, my_second_tab):
        await socket.send_json_to({"type": "cancel"})
        assert await socket.receive_json_from(timeout=TIMEOUT) == protocol.error(
            protocol.ERR_NOTHING_TO_CANCEL
        )
    done = (await receive_until(mine, "turn_complete", "cancelled", "error"))[-1]
    assert done["type"] == "turn_complete" and done["turn"] == 1
    assert await stored("s-cancel-mine") == ["user", "message"]
    for socket in (mine, theirs, my_second_tab):
        await socket.disconnect()


async def test_other_messages_while_running_are_still_busy(chatter, slow_demo):
    chat = await open_chat(chatter, "s-cancel-busy")
    await chat.send_json_to({"type": "user_message", "text": "tell me a story"})
    await receive_until(chat, "delta")
    await chat.send_json_to({"type": "user_message", "text": "again"})
    assert (await receive_until(chat, "busy"))[-1] == protocol.busy()
    await chat.send_json_to({"type": "cancel"})
    assert (await receive_until(chat, "cancelled"))[-1]["type"] == "cancelled"
    assert await stored("s-cancel-busy") == []
    await chat.disconnect()


async def test_cancelled_spans_are_written_but_no_turn_is_linked(chatter, slow_demo):
    sid = "s-cancel-spans"
    chat = await open_chat(chatter, sid)
    await chat.send_json_to({"type": "user_message", "text": "calculate 3*3"})
    await receive_until(chat, "delta")
    await chat.send_json_to({"type": "cancel"})
    await receive_until(chat, "cancelled")
    await chat.disconnect()
    processor = agents.tracing_processor()
    assert processor is not None
    await asyncio.sleep(0.1)  # the run loop's finally ends the trace
    await asyncio.to_thread(processor.force_flush)

    @sync_to_async
    def check() -> None:
        trace = AgentTrace.objects.get(group_id=sid)
        assert trace.turn is None and trace.ended_at is not None
        kinds = set(
            AgentSpan.objects.filter(trace_id=trace.trace_id).values_list("kind", flat=True)
        )
        assert "function" in kinds  # the tool ran: its span is kept with the trace

    await check()
