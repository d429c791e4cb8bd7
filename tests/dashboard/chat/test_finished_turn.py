"""A finished chat turn: its trace (linked, with spans and the time to first token) and its
``turn_complete`` frame (the stored turn rendered as the page renders it after a reload, its
latency and cost). The real ``Runner`` on the offline demo model (free, named
``forkview-offline-demo``) or on a scripted model (markdown, hostile HTML); the chat's own
trace processor, flushed by the chat before it reports the turn.
"""

from __future__ import annotations

import re

import pytest
from agents.testing import ModelStep, assistant_message
from asgiref.sync import sync_to_async
from django.test import Client
from django.urls import reverse

from conversations.models import AgentSpan, AgentTrace
from dashboard import agents
from dashboard.chat.turns import TTFT_KEY, TTFT_SPAN
from tests.dashboard.chat import test_consumers as base
from tests.dashboard.chat.test_consumers import (
    open_chat,
    receive_until,
    usage,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

# test_consumers' fixtures: the user, the scripted model, the worker-connection clean-up.
chatter = base.chatter
use_model = base.use_model
_close_worker_connections = base._close_worker_connections


@pytest.fixture
def demo(settings, monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings.FORKVIEW_AGENT = "dashboard.agents.demo_agent"
    settings.FORKVIEW_OFFLINE_TOKEN_DELAY_MS = 1


async def _turn(chat, text: str) -> dict:
    await chat.send_json_to({"type": "user_message", "text": text})
    done = (await receive_until(chat, "turn_complete", "error"))[-1]
    assert done["type"] == "turn_complete", done
    return done


@sync_to_async
def _chat_page(user, session_id: str) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(reverse("session_chat", kwargs={"session_id": session_id}))
    assert response.status_code == 200
    return response.content.decode()


def _article(html: str, turn: int) -> str:
    """The ``<article>`` of ``turn`` in a page (or a fragment)."""
    match = re.search(rf'<article class="turn[^"]*" id="turn-{turn}".*?</article>', html, re.S)
    assert match, f"no turn {turn}"
    return match.group(0)


async def test_every_chat_turn_has_a_linked_trace_with_spans(chatter, demo):
    sid = "s-traced"
    chat = await open_chat(chatter, sid)
    first = await _turn(chat, "calculate 2+2*3")
    second = await _turn(chat, "hello")
    await chat.disconnect()
    processor = agents.tracing_processor()
    assert processor is not None
    processor.force_flush()

    @sync_to_async
    def rows() -> tuple[list[AgentTrace], dict[str, list[AgentSpan]]]:
        traces = list(AgentTrace.objects.filter(group_id=sid).order_by("turn"))
        spans = {t.trace_id: list(AgentSpan.objects.filter(trace_id=t.trace_id)) for t in traces}
        return traces, spans

    traces, spans = await rows()
    assert [(t.session_id, t.branch_id, t.turn) for t in traces] == [
        (sid, "main", 1),
        (sid, "main", 2),
    ]
    assert [t.trace_id for t in traces] == [first["trace_id"], second["trace_id"]]
    for trace, done in zip(traces, (first, second), strict=True):
        assert trace.workflow_name == "Forkview chat" and trace.ended_at is not None
        assert trace.metadata[TTFT_KEY] == str(done["ttft_ms"])
        by_kind = {s.kind: s for s in spans[trace.trace_id]}
        assert by_kind["agent"].name == "Forkview assistant"
        assert by_kind["response"].model == "forkview-offline-demo"
        ttft = by_kind["custom"]
        assert ttft.name == TTFT_SPAN and ttft.data["data"] == {"ttft_ms": done["ttft_ms"]}
    tools = [s.name for s in spans[traces[0].trace_id] if s.kind == "function"]
    assert tools == ["calculate"]
    assert first["latency_ms"] >= first["ttft_ms"] > 0


async def test_finished_turn_is_rendered_as_after_a_reload_with_latency_and_cost(chatter, demo):
    sid = "s-rendered"
    chat = await open_chat(chatter, sid)
    await _turn(chat, "hello")
    done = await _turn(chat, "calculate 2+2*3")
    await chat.disconnect()
    live = done["html"].strip()
    # The same article the chat page shows after a reload, byte for byte.
    assert live == _article(await _chat_page(chatter, sid), 2)
    assert 'data-turn="2"' in live and 'data-tool="calculate"' in live
    assert 'class="trace-latency"' in live and 'class="trace-ttft"' in live
    # The offline model is free, and says so: in the frame and on the trace line.
    assert done["cost"] == "free" and "free" in live


async def test_finished_turn_renders_sanitised_markdown(chatter, use_model):
    use_model(
        ModelStep(
            output=[
                assistant_message("**Bold** and a list:\n\n- one\n- two\n\n<script>x()</script>")
            ],
            usage=usage(3, 5),
        )
    )
    chat = await open_chat(chatter, "s-markdown")
    done = await _turn(chat, "format it")
    await chat.disconnect()
    html = done["html"]
    assert "<strong>Bold</strong>" in html and "<li>one</li>" in html
    assert "<script" not in html  # sanitised, as on the page
    streamed = "**Bold**"  # the deltas were plain text; the rendered turn replaces them
    assert streamed not in html


async def test_with_tracing_off_nothing_is_traced_and_the_turn_says_so(chatter, demo, settings):
    settings.FORKVIEW_TRACING = False
    chat = await open_chat(chatter, "s-untraced")
    done = await _turn(chat, "hello")
    await chat.disconnect()
    assert agents.tracing_processor() is None
    assert done["trace_id"] is None and done["cost"] is None
    assert done["latency_ms"] >= done["ttft_ms"] > 0  # measured by the chat itself
    assert "no trace" in done["html"]
    assert not await sync_to_async(AgentTrace.objects.filter(group_id="s-untraced").exists)()
