"""The pluggable agent, the model backends, the demo tools and the offline demo model."""

from __future__ import annotations

import json

import pytest
import pytest_asyncio
from agents import Agent, OpenAIChatCompletionsModel, Runner
from asgiref.sync import sync_to_async
from django.db import connections

from conversations.session import DjangoSession
from dashboard import agents
from dashboard.agents import backend_label, calculate, evaluate, get_agent, safe_eval
from dashboard.chat_turns import run_turn
from dashboard.offline_model import OFFLINE_LABEL, OfflineModel, count_tokens, tokenize

BACKEND_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL")
MODULE_AGENT = Agent(name="module-level agent", model=OfflineModel())


@pytest.fixture
def offline_env(monkeypatch):
    for name in BACKEND_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# ---- Choosing the agent and the backend ------------------------------------------------------


def test_default_agent_is_the_demo_assistant_on_the_offline_model(offline_env):
    agent = get_agent()
    assert agent.name == "Forkview assistant"
    assert sorted(tool.name for tool in agent.tools) == [
        "calculate",
        "current_time",
        "get_weather",
        "search_sessions",
    ]
    assert isinstance(agent.model, OfflineModel)
    assert backend_label(agent) == OFFLINE_LABEL == "offline demo model"


def test_forkview_agent_may_name_an_agent_instance_or_a_factory(settings):
    settings.FORKVIEW_AGENT = f"{__name__}.MODULE_AGENT"
    assert get_agent() is MODULE_AGENT
    settings.FORKVIEW_AGENT = "dashboard.agents.demo_agent"
    assert get_agent() is not get_agent()  # a factory: a fresh agent per turn
    settings.FORKVIEW_AGENT = "dashboard.agents.INSTRUCTIONS"
    with pytest.raises(TypeError, match="not an Agent"):
        get_agent()
    settings.FORKVIEW_AGENT = "dashboard.nope.agent"
    with pytest.raises(ImportError):
        get_agent()


def test_openai_key_selects_openai_with_forkview_model(offline_env, settings):
    offline_env.setenv("OPENAI_API_KEY", "sk-test")
    settings.FORKVIEW_MODEL = "gpt-4.1-nano"
    agent = get_agent()
    assert agent.model == "gpt-4.1-nano"
    assert backend_label(agent) == "OpenAI gpt-4.1-nano"
    assert agents.run_config().tracing_disabled is False


def test_base_url_selects_an_openai_compatible_server(offline_env, settings):
    offline_env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")
    settings.FORKVIEW_MODEL = "llama3.2"
    agent = get_agent()
    assert isinstance(agent.model, OpenAIChatCompletionsModel)
    assert agent.model_settings.include_usage is True
    assert backend_label(agent) == "llama3.2 via http://127.0.0.1:11434/v1"
    assert agents.run_config().tracing_disabled is True


# ---- The calculator --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2+2*3", 8),
        ("(1.5+2)**2", 12.25),
        ("-3 // 2", -2),
        ("7 % 4", 3),
        ("2^10", 1024),
        ("10/4", 2.5),
        ("6/3", 2),
    ],
)
def test_safe_eval_computes_arithmetic(expression, value):
    assert safe_eval(expression) == value


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "x + 1",
        "len('ab')",
        "(1).real",
        "[1, 2]",
        "9**999",
        "'a' * 3",
        "1 if 1 else 2",
        "True + 1",
        "1" * 300,
    ],
)
def test_safe_eval_refuses_everything_else(expression):
    with pytest.raises((ValueError, SyntaxError)):
        safe_eval(expression)


def test_calculate_tool_reports_errors_as_text():
    assert calculate.name == "calculate"
    assert evaluate("2+2*3") == "8"
    assert evaluate("1/3") == "0.3333333333"
    assert evaluate("1/0") == "error: division by zero"
    assert evaluate("open('/etc/passwd')").startswith("error: unsupported element")


# ---- The offline model -----------------------------------------------------------------------


def test_tokens_concatenate_back_to_the_text():
    text = "Hello,  world! It's 12:30 — fine?\n"
    assert "".join(tokenize(text)) == text
    assert count_tokens("2+2*3 = 8.") == 8


async def _stream(agent: Agent, text: str) -> tuple[list, object]:
    result = Runner.run_streamed(agent, text, run_config=agents.run_config(agent))
    events = [event async for event in result.stream_events()]
    return events, result


@pytest.mark.asyncio
async def test_offline_model_streams_token_by_token_with_usage(offline_env):
    agent = Agent(name="plain", model=OfflineModel(), instructions="Be brief.")
    events, result = await _stream(agent, "hello there")
    raw = [e.data.type for e in events if e.type == "raw_response_event"]
    assert raw[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert raw[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [
        e.data.delta
        for e in events
        if e.type == "raw_response_event" and e.data.type == "response.output_text.delta"
    ]
    assert "".join(deltas) == result.final_output
    assert deltas == tokenize(result.final_output)
    assert result.final_output.startswith('You said: "hello there".')
    usage = result.context_wrapper.usage
    assert usage.requests == 1
    assert usage.output_tokens == count_tokens(result.final_output)
    assert usage.input_tokens == count_tokens("Be brief. hello there")
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    # Deterministic: the same conversation gives the same answer and the same counts.
    _, again = await _stream(agent, "hello there")
    assert again.final_output == result.final_output
    assert again.context_wrapper.usage.total_tokens == usage.total_tokens


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("text", "tool", "arguments", "answer"),
    [
        ("Calculate 2+2*3", "calculate", {"expression": "2+2*3"}, "2+2*3 = 8."),
        ("what is (1+2)**3?", "calculate", {"expression": "(1+2)**3"}, "(1+2)**3 = 27."),
        ("What time is it?", "current_time", {}, "The current time is 2031-04-05 06:07:08 UTC."),
        (
            "What's the weather like in Lisbon?",
            "get_weather",
            {"city": "Lisbon"},
            "Lisbon: 22°C, sunny, humidity 48%.",
        ),
        (
            "WEATHER FOR São Paulo",
            "get_weather",
            {"city": "São Paulo"},
            "São Paulo: 27°C, thunderstorms, humidity 88%.",
        ),
    ],
)
async def test_offline_model_calls_the_demo_tools(
    offline_env, monkeypatch, text, tool, arguments, answer
):
    from datetime import UTC, datetime

    monkeypatch.setattr(agents, "_now", lambda: datetime(2031, 4, 5, 6, 7, 8, tzinfo=UTC))
    agent = agents.demo_agent()
    agent.model.token_delay = 0
    events, result = await _stream(agent, text)
    calls = [e.item.raw_item for e in events if getattr(e, "name", None) == "tool_called"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [(tool, arguments)]
    assert result.final_output == answer
    assert result.context_wrapper.usage.requests == 2


@pytest.mark.asyncio
async def test_offline_model_without_tools_just_talks(offline_env):
    agent = Agent(name="toolless", model=OfflineModel())
    _, result = await _stream(agent, "calculate 2+2")
    assert result.final_output.startswith('You said: "calculate 2+2"')


@pytest_asyncio.fixture
async def _close_worker_connections():
    yield
    await sync_to_async(connections.close_all)()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_search_sessions_tool_queries_stored_sessions(offline_env, _close_worker_connections):
    await DjangoSession(session_id="refunds-2024").add_items(
        [
            {"role": "user", "content": "I want a REFUND for order 7"},
            {"role": "assistant", "content": "ok"},
        ]
    )
    await DjangoSession(session_id="other").add_items([{"role": "user", "content": "hello"}])
    agent = agents.demo_agent()
    agent.model.token_delay = 0
    events = []

    async def emit(message):
        events.append(message)

    outcome = await run_turn(
        session_id="chat-1", input="search sessions for refund", emit=emit, agent=agent
    )
    calls = [m for m in events if m["type"] == "tool_call"]
    assert calls[0]["name"] == "search_sessions"
    assert json.loads(calls[0]["arguments"]) == {"query": "refund"}
    output = next(m for m in events if m["type"] == "tool_output")["output"]
    assert output == "refunds-2024 (turn 1): I want a REFUND for order 7"
    assert "refunds-2024" in outcome.final_output
    assert outcome.turn == 1 and outcome.items_stored == 4
