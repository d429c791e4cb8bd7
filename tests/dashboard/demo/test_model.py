"""The offline demo model: token streaming, usage, the demo prompts, and tools it was never
told about (it knows no tool by name)."""

from __future__ import annotations

import json
import re

import pytest
from agents import Agent, Runner, function_tool

from dashboard import agents
from dashboard.demo import tools
from dashboard.demo.model import (
    OfflineIntent,
    OfflineModel,
    count_tokens,
    registered_intents,
    tokenize,
)


@pytest.fixture
def offline_env(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


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

    monkeypatch.setattr(tools, "_now", lambda: datetime(2031, 4, 5, 6, 7, 8, tzinfo=UTC))
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


@pytest.mark.asyncio
async def test_demo_agent_small_talk_and_help_text_are_exact(offline_env):
    agent = agents.demo_agent()
    agent.model.token_delay = 0
    _, result = await _stream(agent, "  hello   there ")
    assert result.final_output == (
        'You said: "hello there". '
        "I'm the offline demo model: deterministic, no network, no API key. "
        'Try "what time is it", "calculate 2+2*3", "weather in Lisbon" or '
        '"search sessions for refund". '
        "Set OPENAI_API_KEY or OPENAI_BASE_URL to talk to a real model."
    )


# ---- Tools it was never told about ------------------------------------------------------------


@function_tool
def lookup_order(order_id: str) -> str:
    """Look up an order in the shop (JSON)."""
    return json.dumps({"order_id": order_id, "status": "shipped"})


@function_tool
def convert_currency(amount: float, to: str, rounded: bool = True) -> str:
    """Convert an amount of euros to another currency."""
    value = amount * 2
    return f"{round(value) if rounded else value} {to}"


@function_tool(name_override="calculate")
def team_calculate(formula: str) -> str:
    """A team's own tool that happens to share a demo tool's name, not its parameters."""
    return f"team result for {formula}"


def _team_agent(*team_tools, model: OfflineModel | None = None) -> Agent:
    return Agent(name="team", model=model or OfflineModel(), tools=list(team_tools))


async def _calls(agent: Agent, text: str) -> tuple[list[tuple[str, dict]], str]:
    events, result = await _stream(agent, text)
    raw = [e.item.raw_item for e in events if getattr(e, "name", None) == "tool_called"]
    return [(c.name, json.loads(c.arguments)) for c in raw], result.final_output


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("text", "call", "answer"),
    [
        (
            "Please lookup order A-10442?",
            ("lookup_order", {"order_id": "A-10442"}),
            'lookup_order returned: {"order_id": "A-10442", "status": "shipped"}',
        ),
        (
            "lookup_order order_id=B-7",
            ("lookup_order", {"order_id": "B-7"}),
            'lookup_order returned: {"order_id": "B-7", "status": "shipped"}',
        ),
        (
            "convert currency amount=12.5 to=USD rounded=false",
            ("convert_currency", {"amount": 12.5, "to": "USD", "rounded": False}),
            "convert_currency returned: 25.0 USD",
        ),
        (
            'convert_currency {"amount": 3, "to": "NOK"}',
            ("convert_currency", {"amount": 3, "to": "NOK"}),
            "convert_currency returned: 6 NOK",
        ),
    ],
)
async def test_offline_model_calls_a_teams_tools_by_name(offline_env, text, call, answer):
    calls, final = await _calls(_team_agent(lookup_order, convert_currency), text)
    assert calls == [call]
    assert final == answer


@pytest.mark.asyncio
async def test_offline_model_with_other_tools_ignores_the_demo_prompts(offline_env):
    agent = _team_agent(lookup_order, convert_currency)
    for text in ("what time is it", "weather in Lisbon", "search sessions for refund"):
        calls, final = await _calls(agent, text)
        assert calls == []
        assert final.startswith(f'You said: "{text}"')
        assert "Try " not in final  # no demo tool here to suggest
        assert "Name a tool to call it (lookup_order, convert_currency)." in final
    # A required parameter it cannot fill: no call.
    calls, _ = await _calls(agent, "convert currency to=USD")
    assert calls == []


@pytest.mark.asyncio
async def test_a_demo_intent_needs_the_tools_parameters_not_just_its_name(offline_env):
    # "calculate 2+2" would be the demo calculator's {"expression": ...}; this tool takes
    # "formula", so the model calls it the generic way instead.
    calls, final = await _calls(_team_agent(team_calculate), "calculate 2+2")
    assert calls == [("calculate", {"formula": "2+2"})]
    assert final == "calculate returned: team result for 2+2"


@pytest.mark.asyncio
async def test_a_team_can_give_the_offline_model_its_own_intents(offline_env):
    intent = OfflineIntent(
        tool="lookup_order",
        parameters=("order_id",),
        match=lambda text: {"order_id": m.group(0)} if (m := re.search(r"#\w+", text)) else None,
        answer=lambda arguments, output: f"Order {arguments['order_id']} has shipped.",
        example="where is order #A1",
    )
    agent = _team_agent(lookup_order, model=OfflineModel(intents=[intent]))
    calls, final = await _calls(agent, "where is my parcel #Q42?")
    assert calls == [("lookup_order", {"order_id": "#Q42"})]
    assert final == "Order #Q42 has shipped."
    _, final = await _calls(agent, "hi")
    assert 'Try "where is order #A1".' in final
    # Only its own intents: the registered demo ones are not consulted.
    assert OfflineModel(intents=[intent]).intents == (intent,)
    assert {i.tool for i in registered_intents()} >= {"calculate", "search_sessions"}
