"""Real ``Runner`` turns (``ScriptedModel``, a real ``@function_tool``) on ``DjangoSession``.

The same script also runs against the SDK's ``AdvancedSQLiteSession``; the stored history
and its per-turn structure must be the same.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio
from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.extensions.memory import AdvancedSQLiteSession
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call
from agents.usage import Usage
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

from conversations.models import AgentMessage, MessageStructure, TurnUsage
from conversations.session import DjangoSession

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest.fixture(autouse=True)
def _no_tracing():
    set_tracing_disabled(True)
    yield
    set_tracing_disabled(False)


@function_tool
def get_weather(city: str) -> str:
    """Today's weather in a city."""
    return f"Sunny in {city}"


def step_usage(input_tokens: int, output_tokens: int, cached: int = 0, reasoning: int = 0) -> Usage:
    return Usage(
        requests=1,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
        input_tokens_details=InputTokensDetails(cached_tokens=cached, cache_write_tokens=0),
        output_tokens_details=OutputTokensDetails(reasoning_tokens=reasoning),
    )


def scripted_model() -> ScriptedModel:
    """Four model calls: a tool call and its answer, then three plain answers."""
    return ScriptedModel(
        [
            ModelStep(
                output=[function_call("get_weather", {"city": "Paris"}, call_id="call_1")],
                usage=step_usage(100, 10, cached=20, reasoning=4),
            ),
            ModelStep(
                output=[assistant_message("It is sunny in Paris.", item_id="m1")],
                usage=step_usage(130, 8),
            ),
            ModelStep(
                output=[assistant_message("You're welcome.", item_id="m2")],
                usage=step_usage(150, 5, cached=100),
            ),
            ModelStep(
                output=[assistant_message("Anytime!", item_id="m3")], usage=step_usage(150, 3)
            ),
        ]
    )


async def drive(session: Any) -> dict[str, Any]:
    """Two turns on main (run, then streamed), a branch from turn 2, one more turn there."""
    model = scripted_model()
    agent = Agent(name="forecaster", instructions="Be terse.", model=model, tools=[get_weather])

    first = await Runner.run(agent, "What's the weather in Paris?", session=session)
    await session.store_run_usage(first)

    streamed = Runner.run_streamed(agent, "Thanks!", session=session)
    async for _event in streamed.stream_events():
        pass
    await session.store_run_usage(streamed)

    branch = await session.create_branch_from_turn(2, "polite")
    third = await Runner.run(agent, "Thanks a lot!", session=session)
    await session.store_run_usage(third)
    model.assert_complete()

    return {
        "outputs": [first.final_output, streamed.final_output, third.final_output],
        "branch": branch,
        "branches": sorted(b["branch_id"] for b in await session.list_branches()),
        "main_items": await session.get_items(branch_id="main"),
        "branch_items": await session.get_items(),
        "main_turns": await session.get_conversation_by_turns(branch_id="main"),
        "branch_turns": await session.get_conversation_by_turns(),
        "tool_usage": await session.get_tool_usage(branch_id="main"),
        "main_usage": await session.get_turn_usage(branch_id="main"),
        "branch_usage": await session.get_turn_usage(),
        "session_usage": await session.get_session_usage(),
        "model_inputs": [call.input for call in model.calls],
    }


@pytest_asyncio.fixture
async def ours() -> dict[str, Any]:
    session = DjangoSession(session_id="runner")
    try:
        return await drive(session)
    finally:
        session.close()


async def test_runner_outputs_and_tool_call(ours):
    assert ours["outputs"] == ["It is sunny in Paris.", "You're welcome.", "Anytime!"]
    # The tool really ran: its output is in the history the second model call saw.
    outputs = [i for i in ours["main_items"] if i.get("type") == "function_call_output"]
    assert [o["call_id"] for o in outputs] == ["call_1"]
    assert "Sunny in Paris" in str(outputs[0]["output"])


async def test_runner_structure_per_turn(ours):
    user, assistant = {"type": "user", "tool_name": None}, {"type": "assistant", "tool_name": None}
    call = {"type": "function_call", "tool_name": "get_weather"}
    output = {"type": "function_call_output", "tool_name": None}
    assert ours["main_turns"] == {1: [user, call, output, assistant], 2: [user, assistant]}
    assert ours["branch_turns"] == {1: [user, call, output, assistant], 2: [user, assistant]}
    assert ours["branch_items"][-2] == {"role": "user", "content": "Thanks a lot!"}
    assert ours["tool_usage"] == [("get_weather", 1, 1)]
    assert ours["branch"] == "polite"
    assert ours["branches"] == ["main", "polite"]


async def test_runner_history_sent_to_model(ours):
    """Each run's model input starts with the stored history of the current branch."""
    second_run, third_run = ours["model_inputs"][2], ours["model_inputs"][3]
    assert second_run[-1] == {"role": "user", "content": "Thanks!"}
    assert third_run[-1] == {"role": "user", "content": "Thanks a lot!"}
    # The branch run saw turn 1 only, not main's "Thanks!" turn.
    assert {"role": "user", "content": "Thanks!"} not in third_run
    assert third_run[:-1] == ours["main_items"][:4]


async def test_runner_usage_per_turn(ours):
    turn1, turn2 = ours["main_usage"]
    assert turn1["user_turn_number"] == 1
    assert (turn1["requests"], turn1["input_tokens"], turn1["output_tokens"]) == (2, 230, 18)
    assert turn1["total_tokens"] == 248
    assert turn1["input_tokens_details"]["cached_tokens"] == 20
    assert turn1["output_tokens_details"] == {"reasoning_tokens": 4}
    assert (turn2["user_turn_number"], turn2["requests"], turn2["total_tokens"]) == (2, 1, 155)
    assert turn2["input_tokens_details"]["cached_tokens"] == 100
    # The branch has no usage for its copied turn 1; its own turn 2 is the third run.
    assert [(u["user_turn_number"], u["total_tokens"]) for u in ours["branch_usage"]] == [(2, 153)]
    assert ours["session_usage"] == {
        "requests": 4,
        "input_tokens": 530,
        "output_tokens": 26,
        "total_tokens": 556,
        "total_turns": 3,
    }


async def test_runner_stored_rows(ours):
    rows = [
        r
        async for r in MessageStructure.objects.filter(session_id="runner")
        .order_by("sequence_number")
        .values("branch_id", "message_type", "tool_name", "user_turn_number", "sequence_number")
    ]
    main = [r for r in rows if r["branch_id"] == "main"]
    branch = [r for r in rows if r["branch_id"] == "polite"]
    assert [r["user_turn_number"] for r in main] == [1, 1, 1, 1, 2, 2]
    assert [r["user_turn_number"] for r in branch] == [1, 1, 1, 1, 2, 2]
    assert [r["sequence_number"] for r in rows] == list(range(1, 13))
    assert [r["tool_name"] for r in main if r["tool_name"]] == ["get_weather"]
    # Copies share message rows: 6 on main + 2 new on the branch.
    assert await AgentMessage.objects.filter(session_id="runner").acount() == 8
    usage_rows = [
        (u.branch_id, u.user_turn_number, u.requests)
        async for u in TurnUsage.objects.filter(session_id="runner").order_by("id")
    ]
    assert usage_rows == [("main", 1, 2), ("main", 2, 1), ("polite", 2, 1)]


async def test_runner_matches_sdk(ours, tmp_path):
    sdk = AdvancedSQLiteSession(
        session_id="runner", db_path=tmp_path / "sdk.sqlite3", create_tables=True
    )
    try:
        theirs = await drive(sdk)
    finally:
        sdk.close()
    for key in theirs:
        assert ours[key] == theirs[key], key
