"""The demo tools: the safe calculator and ``search_sessions`` (the review pages' search)."""

from __future__ import annotations

import json

import pytest
import pytest_asyncio
from agents.tool_context import ToolContext
from asgiref.sync import sync_to_async
from django.db import connections

from conversations.session import DjangoSession
from dashboard import agents
from dashboard.chat.context import ChatContext
from dashboard.chat.turns import run_turn
from dashboard.demo.tools import NOT_ALLOWED, calculate, evaluate, safe_eval, search_sessions
from tests.conftest import grant


@pytest.fixture
def offline_env(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


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


@pytest_asyncio.fixture
async def _close_worker_connections():
    yield
    await sync_to_async(connections.close_all)()


def _user(django_user_model, name: str, *codenames: str):
    user = django_user_model.objects.create_user(username=name, password="pw-123456789")
    grant(user, *codenames)
    return django_user_model.objects.get(pk=user.pk)


@pytest.fixture
def acting(django_user_model):
    """A run context whose user may view and chat (what the chat passes)."""

    def make(*codenames: str, name: str = "acting") -> ChatContext:
        user = _user(django_user_model, name, *codenames)
        return ChatContext(user=user, session_id="chat-1", branch_id="main")

    return make


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_search_sessions_tool_queries_stored_sessions(
    offline_env, _close_worker_connections, acting
):
    context = await sync_to_async(acting)("view_agentsession", "continue_conversation")
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
        session_id="chat-1",
        input="search sessions for refund",
        emit=emit,
        agent=agent,
        context=context,
    )
    calls = [m for m in events if m["type"] == "tool_call"]
    assert calls[0]["name"] == "search_sessions"
    assert json.loads(calls[0]["arguments"]) == {"query": "refund"}
    output = next(m for m in events if m["type"] == "tool_output")["output"]
    assert output == "refunds-2024 (turn 1): I want a REFUND for order 7"
    assert "refunds-2024" in outcome.final_output
    assert outcome.turn == 1 and outcome.items_stored == 4


def test_search_sessions_calls_the_review_pages_search_selector():
    from dashboard.demo import tools
    from dashboard.review.selectors import search

    assert tools.search_hits is search.search_hits  # one search implementation


async def _search(query: str, run_context: object = None) -> str:
    """Invoke the tool as the Runner does (arguments as JSON text)."""
    arguments = json.dumps({"query": query})
    context = ToolContext(
        context=run_context,
        tool_name="search_sessions",
        tool_call_id="c1",
        tool_arguments=arguments,
    )
    return await search_sessions.on_invoke_tool(context, arguments)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_search_sessions_output_is_plain_text_with_the_branch(
    _close_worker_connections, acting
):
    reader = await sync_to_async(acting)("view_agentsession")
    session = DjangoSession(session_id="shop <b>")
    await session.add_items([{"role": "user", "content": "where is my parcel?"}])
    await session.create_branch_from_turn(1, "retry")
    await session.add_items([{"role": "user", "content": "Parcel & refund <now>"}])
    # No <mark>, nothing escaped: plain text for the model.
    assert await _search("refund", reader) == "shop <b> (retry, turn 1): Parcel & refund <now>"
    assert await _search("zebra", reader) == "no sessions found."
    assert await _search("  ", reader) == "error: empty query"


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_search_sessions_reads_nothing_without_a_user_who_may_view(
    _close_worker_connections, acting, django_user_model
):
    """No run context, a context without a user, a chat-only user, an inactive viewer: the
    tool searches nothing and says so (issue 12, hole 1)."""
    await DjangoSession(session_id="secret").add_items(
        [{"role": "user", "content": "the launch code is PLANTED-SECRET-42"}]
    )
    chat_only = await sync_to_async(acting)("continue_conversation", name="chat-only")
    inactive = await sync_to_async(acting)("view_agentsession", name="gone")
    await sync_to_async(django_user_model.objects.filter(pk=inactive.user.pk).update)(
        is_active=False
    )
    inactive = ChatContext(
        user=await sync_to_async(django_user_model.objects.get)(pk=inactive.user.pk),
        session_id="chat-1",
        branch_id="main",
    )
    for run_context in (None, object(), chat_only, inactive):
        output = await _search("PLANTED-SECRET-42", run_context)
        assert output == NOT_ALLOWED
        assert "PLANTED" not in output
