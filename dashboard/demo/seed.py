"""The demo conversations ``manage.py seed_demo`` writes, the way real ones are written.

Every short session is produced by the real ``agents.Runner`` driving real ``@function_tool``
tools, with an offline ``ScriptedModel`` standing in for the LLM, and stored through
``DjangoSession`` followed by ``store_run_usage``. Hosted-tool items (web/file search) are
appended with ``add_items``, as a Responses-API run would record them. The long session
(300+ turns) is appended in ``add_items`` batches for speed, each turn's usage stored with
``store_usage``.

Idempotent: a session that already exists is skipped (:func:`seed_sessions`).
:func:`seed_reviews` adds the review workflow's demo data through ``conversations.reviews``:
three score definitions, two reviewers (accounts that cannot log in) and their scores,
comments, tags and review statuses; a session that already has annotations or a review
status is left as it is. :func:`demo_reviewer` creates (or refreshes) the dev-only ``demo``
account that may browse, prefer, chat and annotate.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from agents import Agent, RunConfig, Runner, Tool, TResponseInputItem, function_tool
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call
from agents.usage import Usage
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from openai.types.responses.response_reasoning_item import ResponseReasoningItem, Summary

from conversations import reviews, writes
from conversations.models import (
    AgentSession,
    AgentSpan,
    AgentTrace,
    Annotation,
    MessageStructure,
    ReviewStatus,
    ScoreDefinition,
    ScoreKind,
    SessionReview,
    SpanKind,
    TurnUsage,
)
from conversations.permissions import (
    ANNOTATE_CODENAME,
    APP_LABEL,
    CHAT_CODENAME,
    PREFER_CODENAME,
    VIEW_CODENAME,
)
from conversations.session import DjangoSession
from dashboard.review.selectors.usage import token_detail

from .model import token_usage
from .tools import evaluate, get_weather

__all__ = [
    "DEFINITIONS",
    "DEMO_REVIEWERS",
    "DEMO_USERNAME",
    "LONG_SESSION_ID",
    "LONG_SESSION_TURNS",
    "REVIEWS",
    "SEEDS",
    "demo_reviewer",
    "seed_reviews",
    "seed_sessions",
    "seed_traces",
]

DEMO_USERNAME = "demo"
LONG_SESSION_ID = "demo/long-support-thread"
LONG_SESSION_TURNS = 320


# ---- Real tools (the scripted model calls them through the Runner) -----------------------


# The live demo's safe evaluator (no eval), under the name the seeded conversations use.
calculator = function_tool(evaluate, name_override="calculator")


@function_tool
def web_search(query: str, max_results: int = 3) -> str:
    """Search the web (an offline stub returning canned results, as JSON)."""
    slug = "-".join(query.lower().split())[:40]
    # JSON text, not Python objects: the SDK would store their repr.
    results = [
        {
            "title": f"{query.title()} — result {n}",
            "url": f"https://example.org/{slug}/{n}",
            "snippet": f"An overview of {query} (source {n}).",
        }
        for n in range(1, max_results + 1)
    ]
    return json.dumps(results, ensure_ascii=False)


@function_tool
def current_time(timezone: str = "UTC") -> str:
    """The current time in a timezone (fixed clock for the demo)."""
    return f"2026-11-21T14:05:00 {timezone}"


@function_tool
def lookup_order(order_id: str) -> str:
    """Look up an order in the (fake) shop database (JSON)."""
    order = {
        "order_id": order_id,
        "status": "shipped",
        "carrier": "PostNord",
        "items": [{"sku": "KB-87", "name": "Mechanical keyboard", "qty": 1}],
        "eta": "2026-11-24",
    }
    return json.dumps(order)


TOOLS: list[Tool] = [calculator, get_weather, web_search, current_time, lookup_order]


def _as_items(items: Sequence[dict[str, Any]]) -> list[TResponseInputItem]:
    """Hand-built items, in the shape the SDK stores them, as the SDK's input item type."""
    # TResponseInputItem is a union of TypedDicts; these dicts are built to match one of them.
    return cast("list[TResponseInputItem]", list(items))


# ---- A tiny script language for turns ----------------------------------------------------


@dataclass
class Turn:
    """One user turn: what the user says and what the model does, step by step."""

    user: str
    answer: str
    calls: Sequence[tuple[str, dict[str, Any]]] = ()
    reasoning: str | None = None
    hosted: Sequence[dict[str, Any]] = ()  # hosted-tool items appended after the run
    store_usage: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


_ids = itertools.count(1)


def _usage(prompt_chars: int, answer: str, *, reasoning: bool, calls: int) -> Usage:
    n = next(_ids)
    input_tokens = 180 + prompt_chars // 3 + 40 * calls + (n * 37) % 90
    output_tokens = 20 + len(answer) // 4 + 25 * calls + (n * 13) % 40
    return token_usage(
        input_tokens,
        output_tokens,
        cached=(input_tokens // 2) if n % 3 == 0 else 0,
        reasoning=32 + (n * 7) % 64 if reasoning else 0,
    )


def _steps(turn: Turn, history_chars: int) -> list[ModelStep]:
    steps = []
    first: list[Any] = []
    if turn.reasoning:
        first.append(
            ResponseReasoningItem(
                id=f"rs_{next(_ids)}",
                type="reasoning",
                summary=[Summary(text=turn.reasoning, type="summary_text")],
            )
        )
    if turn.calls:
        for name, args in turn.calls:
            first.append(function_call(name, args, call_id=f"call_{next(_ids):05d}"))
        steps.append(
            ModelStep(
                output=first,
                usage=_usage(
                    history_chars, "", reasoning=bool(turn.reasoning), calls=len(turn.calls)
                ),
            )
        )
        first = []
    first.append(assistant_message(turn.answer, item_id=f"msg_{next(_ids):05d}"))
    steps.append(
        ModelStep(
            output=first,
            usage=_usage(history_chars, turn.answer, reasoning=bool(turn.reasoning), calls=0),
        )
    )
    return steps


async def _run_turns(session: DjangoSession, turns: Sequence[Turn]) -> None:
    for turn in turns:
        history = sum(len(json.dumps(i)) for i in await session.get_items(limit=20))
        model = ScriptedModel(_steps(turn, history))
        agent = Agent(name="Forkview demo assistant", model=model, tools=TOOLS)
        # Scripted runs trace nothing (per run, not the SDK's global switch): seed_traces
        # writes the demo's traces.
        result = await Runner.run(
            agent, turn.user, session=session, run_config=RunConfig(tracing_disabled=True)
        )
        if turn.hosted:
            # Hosted tools run on OpenAI's side; their items arrive in the response as is.
            await session.add_items(_as_items(turn.hosted))
        if turn.store_usage:
            await session.store_run_usage(result)


def _web_search_call(query: str) -> dict[str, Any]:
    return {
        "id": f"ws_{next(_ids):05d}",
        "type": "web_search_call",
        "status": "completed",
        "action": {"type": "search", "query": query},
    }


def _file_search_call(query: str, files: list[str]) -> dict[str, Any]:
    return {
        "id": f"fs_{next(_ids):05d}",
        "type": "file_search_call",
        "status": "completed",
        "queries": [query],
        "results": [
            {
                "file_id": f"file-{i}",
                "filename": name,
                "score": round(0.92 - i * 0.1, 2),
                "text": f"Excerpt from {name} about {query}.",
            }
            for i, name in enumerate(files)
        ],
    }


# ---- The demo conversations ----------------------------------------------------------------

TRIP = [
    Turn(
        "I'm planning a long weekend in Lisbon. What's the weather like there right now?",
        "It's **22 °C and sunny** in Lisbon, with 48% humidity — great walking weather.\n\n"
        "Pack:\n- light layers for the evening breeze\n- comfortable shoes (the hills!)",
        calls=[("get_weather", {"city": "Lisbon"})],
        reasoning="User wants current Lisbon weather; call get_weather.",
    ),
    Turn(
        "How does that compare with Oslo? I might go there instead.",
        "Oslo is a different story: **3 °C with light snow** (81% humidity).\n\n"
        "| City | Temp | Sky |\n|---|---|---|\n"
        "| Lisbon | 22 °C | sunny |\n| Oslo | 3 °C | light snow |",
        calls=[("get_weather", {"city": "Oslo"})],
    ),
    Turn(
        "Ok, Lisbon it is. Find me a few things to do in Alfama.",
        "Here are a few ideas for Alfama:\n\n1. Walk up to the *Miradouro de Santa Luzia*.\n"
        "2. Ride tram 28 early in the morning.\n3. Catch a fado show in the evening.",
        calls=[("web_search", {"query": "things to do in Alfama Lisbon", "max_results": 3})],
        reasoning="Search for activities; summarise top three.",
    ),
    Turn(
        "My budget is 640 euros for 3 nights. How much per night is that, if food is 35% of it?",
        "Food takes 35% → **224 €**, leaving **416 €** for lodging, "
        "i.e. about **138.67 € per night**.",
        calls=[
            ("calculator", {"expression": "640*0.35"}),
            ("calculator", {"expression": "(640-640*0.35)/3"}),
        ],
    ),
    Turn(
        "What time is it in Lisbon now? I want to call a guesthouse.",
        "It's 14:05 in Lisbon (same as UTC right now), so the guesthouse should be open.",
        calls=[("current_time", {"timezone": "Europe/Lisbon"})],
    ),
    Turn(
        "Thanks! Summarise the plan in three bullets.",
        "- **Where:** Lisbon, Alfama base, 3 nights\n"
        "- **Budget:** ~139 €/night lodging, 224 € food\n"
        "- **Do:** Santa Luzia viewpoint, tram 28, an evening of fado",
    ),
]

TRIP_BRANCH_TOKYO = [
    Turn(
        "Actually, let's look at Tokyo instead of Lisbon. Weather?",
        "Tokyo is **16 °C and overcast**, 62% humidity. Bring a light jacket.",
        calls=[("get_weather", {"city": "Tokyo"})],
        reasoning="Switch destination to Tokyo; fetch weather.",
    ),
    Turn(
        "Find a few things to do in Asakusa.",
        "In Asakusa:\n\n1. Senso-ji temple at dawn\n2. Nakamise-dori snacks\n"
        "3. A Sumida river cruise",
        calls=[("web_search", {"query": "things to do in Asakusa", "max_results": 3})],
        hosted=[_web_search_call("Asakusa opening hours Senso-ji")],
    ),
]

TRIP_BRANCH_BUDGET = [
    Turn(
        "My budget is 900 euros for 4 nights, food 30%. Per night?",
        "Food is **270 €**; the remaining **630 €** gives **157.50 € per night**.",
        calls=[
            ("calculator", {"expression": "900*0.30"}),
            ("calculator", {"expression": "(900-270)/4"}),
        ],
        reasoning="Recompute with the new budget.",
    ),
    Turn(
        "Great, summarise.",
        "- 4 nights in Lisbon\n- ~157.50 €/night lodging\n- 270 € for food",
    ),
]

TRIP_BRANCH_OF_BRANCH = [
    Turn(
        "Skip Asakusa — what about a day trip to Nikko?",
        "A Nikko day trip works well: ~2 h from Asakusa by Tobu limited express. "
        "See Toshogu shrine and Kegon falls.",
        calls=[("web_search", {"query": "Nikko day trip from Tokyo", "max_results": 2})],
    ),
]

SUPPORT = [
    Turn(
        "Hi, my order #A-10442 hasn't arrived. Can you check?",
        "Order **A-10442** shipped with PostNord and should arrive by **24 Nov**. "
        "It contains 1 × Mechanical keyboard.",
        calls=[("lookup_order", {"order_id": "A-10442"})],
        reasoning="Look the order up before answering.",
    ),
    Turn(
        "What does your returns policy say about opened keyboards?",
        "Per the returns policy, opened keyboards can be returned within **30 days** if all "
        "keycaps are included; a 10% restocking fee applies.",
        hosted=[
            _file_search_call("returns policy opened keyboards", ["returns-policy.pdf", "faq.md"])
        ],
    ),
    Turn(
        "OK, and if I return it, how much do I get back on 129.90?",
        "With the 10% restocking fee you'd get **116.91** back.",
        calls=[("calculator", {"expression": "129.90*0.9"})],
    ),
]

SUPPORT_BRANCH = [
    Turn(
        "Can I exchange it for the tenkeyless model instead?",
        "Yes — exchanges are free within 30 days. I've noted the TKL model (KB-87-TKL) for you.",
        reasoning="Exchange is cheaper for the customer than a return.",
    ),
]

RESEARCH = [
    Turn(
        "Give me a quick overview of retrieval-augmented generation.",
        "**Retrieval-augmented generation (RAG)** pairs a retriever with a generator:\n\n"
        "1. embed the query\n2. fetch the top-k passages\n3. condition the LLM on them\n\n"
        "```python\nhits = index.search(embed(query), k=5)\nanswer = llm(prompt(query, hits))\n```",
        calls=[
            ("web_search", {"query": "retrieval augmented generation overview", "max_results": 3})
        ],
        hosted=[_web_search_call("RAG survey 2025")],
        reasoning="Search, then give a compact explanation with a code sketch.",
    ),
    Turn(
        "What chunk size should I use?",
        "Start with **300–500 tokens** and 10–20% overlap, then tune on your eval set.",
        hosted=[_file_search_call("chunk size recommendations", ["rag-notes.md"])],
    ),
    Turn(
        "And how many tokens is 12 chunks of 450 with 15% overlap?",
        "12 × 450 = 5,400 tokens, of which ~810 are overlap.",
        calls=[
            ("calculator", {"expression": "12*450"}),
            ("calculator", {"expression": "12*450*0.15"}),
        ],
    ),
]

RESEARCH_BRANCH = [
    Turn(
        "What chunk size should I use for code, not prose?",
        "For code, chunk by **function or class** rather than a fixed size; cap at ~800 tokens.",
        reasoning="Code has natural boundaries.",
    ),
    Turn(
        "Thanks.",
        "You're welcome — happy indexing!",
    ),
]

WEATHER_CHAT = [
    Turn(
        "Is it going to rain in São Paulo?",
        "São Paulo: **27 °C, thunderstorms**, humidity 88%. Yes — take an umbrella. ☔",
        calls=[("get_weather", {"city": "São Paulo"})],
    ),
    Turn(
        "And Nairobi, in fahrenheit?",
        "Nairobi is about **75 °F**, partly cloudy.",
        calls=[("get_weather", {"city": "Nairobi", "unit": "fahrenheit"})],
    ),
    Turn("Which is warmer?", "São Paulo (27 °C ≈ 81 °F) is warmer than Nairobi (≈ 75 °F)."),
]

MATH = [
    Turn(
        "What's 17% of 2,340?",
        "17% of 2,340 is **397.8**.",
        calls=[("calculator", {"expression": "2340*0.17"})],
    ),
    Turn(
        "Compound 1000 at 4% for 10 years?",
        "1000 × 1.04¹⁰ ≈ **1480.24**.",
        calls=[
            ("calculator", {"expression": "1000*1.04*1.04*1.04*1.04*1.04*1.04*1.04*1.04*1.04*1.04"})
        ],
        reasoning="Multiply out the power since the calculator has no exponent.",
        store_usage=False,
    ),
    Turn("And at 5%?", "1000 × 1.05¹⁰ ≈ **1628.89**.", store_usage=False),
    Turn("Thanks, that's all.", "Anytime!"),
]

MATH_BRANCH = [
    Turn(
        "Compound 1000 at 4% for 20 years instead?",
        "Roughly **2191.12**.",
        calls=[("calculator", {"expression": "1000*2.1911231"})],
    ),
]


async def _seed_trip() -> None:
    sid = "demo/trip-planning"
    s = DjangoSession(session_id=sid)
    await _run_turns(s, TRIP)
    # Branch 1: from turn 3, try Tokyo instead.
    await s.create_branch_from_turn(3, "tokyo-instead")
    await _run_turns(s, TRIP_BRANCH_TOKYO)
    # A branch of that branch: from its 4th turn (Asakusa), go to Nikko.
    await s.create_branch_from_turn(4, "tokyo/nikko-day-trip")
    await _run_turns(s, TRIP_BRANCH_OF_BRANCH)
    # Branch 2 from main at turn 4: a bigger budget.
    await s.switch_to_branch("main")
    await s.create_branch_from_turn(4, "bigger budget")
    await _run_turns(s, TRIP_BRANCH_BUDGET)


async def _seed_support() -> None:
    s = DjangoSession(session_id="demo/support order A-10442")
    await _run_turns(s, SUPPORT)
    await s.create_branch_from_turn(2, "exchange")
    await _run_turns(s, SUPPORT_BRANCH)


async def _seed_research() -> None:
    s = DjangoSession(session_id="demo/research-rag")
    await _run_turns(s, RESEARCH)
    await s.create_branch_from_turn(2, "code-chunks")
    await _run_turns(s, RESEARCH_BRANCH)
    await s.switch_to_branch("main")
    await s.create_branch_from_turn(3, "what-if-600")
    await _run_turns(
        s,
        [
            Turn(
                "And 12 chunks of 600 with 10% overlap?",
                "7,200 tokens, ~720 of overlap.",
                calls=[("calculator", {"expression": "12*600"})],
            )
        ],
    )


async def _seed_weather() -> None:
    await _run_turns(DjangoSession(session_id="demo/weather-café ☕"), WEATHER_CHAT)


async def _seed_math() -> None:
    s = DjangoSession(session_id="demo/math-homework")
    await _run_turns(s, MATH)  # turns 2 and 3 deliberately have no usage row
    await s.create_branch_from_turn(2, "twenty-years")
    await _run_turns(s, MATH_BRANCH)


_TOPICS = ["invoice", "password reset", "shipping delay", "refund", "API quota", "2FA", "export"]


def _long_turn_items(n: int) -> tuple[list[dict[str, Any]], int, int]:
    """Items for turn ``n`` of the long session: user, maybe a tool round trip, an answer."""
    topic = _TOPICS[n % len(_TOPICS)]
    items: list[dict[str, Any]] = [
        {"role": "user", "content": f"Turn {n}: question about {topic}?"}
    ]
    if n % 4 == 0:
        call_id = f"call_long_{n}"
        items.append(
            {
                "type": "function_call",
                "name": "lookup_order",
                "call_id": call_id,
                "arguments": json.dumps({"order_id": f"L-{n:04d}"}),
                "id": f"fc_long_{n}",
                "status": "completed",
            }
        )
        items.append(
            {
                "type": "function_call_output",
                "call_id": call_id,
                "output": json.dumps({"order_id": f"L-{n:04d}", "status": "delivered"}),
            }
        )
    if n % 10 == 0:
        items.append(
            {
                "type": "reasoning",
                "id": f"rs_long_{n}",
                "summary": [{"type": "summary_text", "text": f"Check the {topic} runbook."}],
            }
        )
    items.append(
        {
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "id": f"msg_long_{n}",
            "content": [
                {
                    "type": "output_text",
                    "annotations": [],
                    "text": f"Here is what I found about **{topic}** (step {n}).",
                }
            ],
        }
    )
    input_tokens = 400 + 35 * n + int(200 * abs(math.sin(n)))  # context grows with the thread
    output_tokens = 60 + (n * 17) % 140
    return items, input_tokens, output_tokens


async def _seed_long() -> None:
    s = DjangoSession(session_id=LONG_SESSION_ID)
    # A few real runs first, then the bulk appended turn by turn (one add_items + one usage each).
    await _run_turns(s, [Turn("Hello, I have a lot of questions today.", "Sure — ask away!")])
    for n in range(2, LONG_SESSION_TURNS + 1):
        items, input_tokens, output_tokens = _long_turn_items(n)
        await s.add_items(_as_items(items))
        usage = token_usage(
            input_tokens, output_tokens, cached=input_tokens // 2, requests=1 + (n % 4 == 0)
        )
        await s.store_usage(usage)
    await s.create_branch_from_turn(300, "retry-from-300")
    await _run_turns(
        s, [Turn("Turn 300 again: can you escalate this instead?", "Escalated to tier 2.")]
    )


SEEDS = {
    "demo/trip-planning": _seed_trip,
    "demo/support order A-10442": _seed_support,
    "demo/research-rag": _seed_research,
    "demo/weather-café ☕": _seed_weather,
    "demo/math-homework": _seed_math,
    LONG_SESSION_ID: _seed_long,
}


async def _seed_missing() -> list[str]:
    rows = AgentSession.objects.filter(session_id__in=list(SEEDS)).values_list(
        "session_id", flat=True
    )
    existing = {sid async for sid in rows}
    created = []
    for sid, seed in SEEDS.items():
        if sid in existing:
            continue
        await seed()
        created.append(sid)
    return created


#: session -> (days ago of its first row, of its last): the demo spreads over two weeks, so
#: the list's dates, the insights' days and the traces look like a team's history.
AGES: dict[str, tuple[float, float]] = {
    "demo/trip-planning": (12.6, 11.9),
    "demo/support order A-10442": (9.4, 9.3),
    "demo/research-rag": (6.2, 5.1),
    "demo/weather-café ☕": (3.5, 2.8),
    "demo/math-homework": (1.3, 0.9),
    LONG_SESSION_ID: (13.8, 0.05),
}


def _backdate(session_id: str, now: datetime) -> None:
    """Spread a freshly written demo session's messages over its :data:`AGES` (in sequence
    order: its branches keep their order), through the write path's ``timestamps_set`` (the
    summary triggers follow, as for any writer)."""
    first, last = AGES.get(session_id, (0.0, 0.0))
    rows = list(
        MessageStructure.objects.for_session(session_id)
        .order_by("sequence_number", "id")
        .values_list("id", "message_id", "branch_id", "user_turn_number")
    )
    if not rows:
        return
    start = now - timedelta(days=first)
    distinct = len({message_id for _, message_id, _, _ in rows})
    step = timedelta(days=first - last) / max(distinct - 1, 1)
    structure: dict[int, datetime] = {}
    messages: dict[int, datetime] = {}
    turns: dict[tuple[str, int | None], datetime] = {}
    clock = start
    for row_id, message_id, branch_id, turn in rows:
        # A new message moves the clock on; a row copied into a branch (a message already
        # seen) is stamped when the branch was made, the clock as it stands.
        if message_id not in messages:
            clock = (start + step * len(messages)).replace(microsecond=0)
            messages[message_id] = clock
        structure[row_id] = clock
        turns[(branch_id, turn)] = clock
    usage = {
        usage_id: turns.get((branch_id, turn), start)
        for usage_id, branch_id, turn in TurnUsage.objects.for_session(session_id).values_list(
            "id", "branch_id", "user_turn_number"
        )
    }
    with transaction.atomic():
        writes.timestamps_set(
            session_id=session_id,
            structure=structure,
            messages=messages,
            usage=usage,
            created_at=structure[rows[0][0]],
            updated_at=structure[rows[-1][0]],
        )


def seed_sessions() -> list[str]:
    """Write every demo session that does not exist yet; return the ids written."""
    created = asyncio.run(_seed_missing())
    now = datetime.now(tz=UTC)
    for session_id in created:
        _backdate(session_id, now)
    seed_traces()
    return created


# ---- The review workflow's demo data ----------------------------------------------------------

#: name -> (kind, min, max, labels, description, position); created when missing, never changed.
DEFINITIONS: dict[str, tuple[str, float | None, float | None, list[str], str, int]] = {
    "helpful": (ScoreKind.BOOLEAN, None, None, [], "Did the reply help? Thumbs up or down.", 1),
    "quality": (ScoreKind.NUMERIC, 1, 5, [], "Overall quality, 1 (poor) to 5 (excellent).", 2),
    "failure-mode": (
        ScoreKind.CATEGORICAL,
        None,
        None,
        ["hallucination", "wrong tool", "incomplete", "tone", "other"],
        "What went wrong, when something did.",
        3,
    ),
}

#: The demo reviewers: accounts that annotate the demo data and cannot log in.
DEMO_REVIEWERS = ("ana", "ben")


@dataclass(frozen=True)
class Note:
    """One demo annotation: who, on what (``branch ""``: the session; ``turn 0``: the
    branch), and a score (``score=(definition, value)``), a comment or a tag."""

    who: str
    branch: str = ""
    turn: int = 0
    score: tuple[str, Any] | None = None
    comment: str = ""
    tag: str = ""


#: session -> (status, assignee, notes). Branches of one session are scored differently, so
#: the compare view has a winner.
REVIEWS: dict[str, tuple[str, str | None, list[Note]]] = {
    "demo/trip-planning": (
        ReviewStatus.REVIEWED,
        "ana",
        [
            Note("ana", "main", 0, score=("quality", 4)),
            Note("ben", "main", 0, score=("quality", 3)),
            Note("ana", "bigger budget", 0, score=("quality", 5)),
            Note("ben", "bigger budget", 0, score=("quality", 4)),
            Note("ana", "tokyo-instead", 0, score=("quality", 3)),
            Note("ana", "tokyo/nikko-day-trip", 0, score=("quality", 2)),
            *(Note("ana", "main", turn, score=("helpful", 1)) for turn in (1, 2, 3, 5, 6)),
            Note("ana", "main", 4, score=("helpful", 0)),
            Note("ana", "main", 4, score=("failure-mode", "incomplete")),
            Note(
                "ana",
                "main",
                4,
                comment="The per-night figure is right, but it never says **what the "
                "416 €** covers. Compare the `bigger budget` branch, which does.",
            ),
            Note("ben", "main", 2, comment="Nice use of a *table* for the comparison."),
            Note("ben", "bigger budget", 5, score=("helpful", 1)),
            Note("ana", "bigger budget", 0, tag="golden"),
            Note("ben", "tokyo/nikko-day-trip", 4, tag="unverified"),
            Note(
                "ben",
                "tokyo/nikko-day-trip",
                4,
                score=("failure-mode", "hallucination"),
            ),
            Note(
                "ben",
                "tokyo/nikko-day-trip",
                4,
                comment="Travel time to Nikko is stated without a source:\n\n"
                "- the search result does not mention it\n- please check before using it",
            ),
        ],
    ),
    "demo/support order A-10442": (
        ReviewStatus.NEEDS_FIX,
        "ben",
        [
            Note("ben", "main", 0, score=("quality", 2)),
            Note("ben", "exchange", 0, score=("quality", 4)),
            Note("ben", "main", 2, score=("helpful", 0)),
            Note("ben", "main", 2, score=("failure-mode", "wrong tool")),
            Note(
                "ben",
                "main",
                2,
                comment="Should have called `lookup_order` again instead of guessing; "
                "see the **exchange** branch for the better flow.",
            ),
            Note("ana", "main", 3, score=("failure-mode", "tone")),
            Note("ana", "main", 0, tag="escalate"),
            Note("ana", "", 0, tag="customer-facing"),
        ],
    ),
    "demo/research-rag": (
        ReviewStatus.IN_REVIEW,
        "ana",
        [
            Note("ana", "main", 0, score=("quality", 3)),
            Note("ana", "code-chunks", 0, score=("quality", 4)),
            Note("ana", "what-if-600", 0, score=("quality", 5)),
            Note("ana", "main", 1, score=("helpful", 1)),
            Note("ana", "code-chunks", 3, score=("failure-mode", "hallucination")),
            Note("ana", "code-chunks", 3, comment="Cites a file that is not in the index."),
            Note("ana", "", 0, tag="rag"),
        ],
    ),
    "demo/math-homework": (
        ReviewStatus.IN_REVIEW,
        None,
        [
            Note("ben", "main", 0, score=("quality", 2)),
            Note("ben", "twenty-years", 0, score=("quality", 5)),
            Note("ben", "main", 3, score=("failure-mode", "incomplete")),
            Note("ben", "twenty-years", 2, score=("helpful", 1)),
            Note("ben", "twenty-years", 2, tag="golden"),
        ],
    ),
    "demo/weather-café ☕": (
        ReviewStatus.UNREVIEWED,
        None,
        [Note("ben", "main", 1, score=("helpful", 1))],
    ),
    LONG_SESSION_ID: (
        ReviewStatus.REVIEWED,
        "ben",
        [
            Note("ben", "", 0, score=("quality", 4)),
            Note("ben", "retry-from-300", 0, score=("quality", 5)),
            Note("ben", "main", 300, score=("helpful", 0)),
            Note("ben", "", 0, tag="long-thread"),
            Note(
                "ben",
                "",
                0,
                comment="Long but consistent. Turn 300 should have **escalated**; "
                "the `retry-from-300` branch does.",
            ),
        ],
    ),
}


def _definitions() -> None:
    for name, (kind, low, high, labels, description, position) in DEFINITIONS.items():
        ScoreDefinition.objects.get_or_create(
            name=name,
            defaults={
                "kind": kind,
                "min_value": low,
                "max_value": high,
                "labels": labels,
                "description": description,
                "position": position,
            },
        )


def _reviewers() -> dict[str, Any]:
    """The demo reviewers (created without a usable password), allowed to view and annotate."""
    user_model = get_user_model()
    permissions = Permission.objects.filter(
        content_type__app_label=APP_LABEL, codename__in=(VIEW_CODENAME, ANNOTATE_CODENAME)
    )
    people = {}
    for name in DEMO_REVIEWERS:
        user = user_model.objects.filter(username=name).first()
        if user is None:
            user = user_model.objects.create_user(username=name)  # no password: cannot log in
            user.user_permissions.add(*permissions)
        people[name] = user
    return people


def seed_reviews() -> tuple[list[str], list[str]]:
    """Write the review demo data of :data:`REVIEWS` for each demo session that exists and
    has neither annotations nor a review status yet (so nothing a user did is overwritten).

    Returns:
        (the sessions annotated, the writes ``conversations.reviews`` refused, one line each:
        e.g. a definition an admin archived or changed).
    """
    _definitions()
    people = _reviewers()
    present = set(AgentSession.objects.filter(pk__in=list(REVIEWS)).values_list("pk", flat=True))
    touched = set(
        Annotation.objects.filter(session_id__in=present).values_list("session_id", flat=True)
    ) | set(SessionReview.objects.filter(pk__in=present).values_list("pk", flat=True))
    done, refused = [], []
    for sid, (status, assignee, notes) in REVIEWS.items():
        if sid not in present or sid in touched:
            continue
        for note in notes:
            user, target = people[note.who], reviews.Target(sid, note.branch, note.turn)
            try:
                if note.score is not None:
                    definition, value = note.score
                    reviews.score_set(user=user, target=target, definition=definition, value=value)
                elif note.comment:
                    reviews.comment_add(user=user, target=target, body=note.comment)
                else:
                    reviews.tag_add(user=user, target=target, tag=note.tag)
            except reviews.ReviewError as exc:
                refused.append(f"{sid}: {exc}")
        if status != ReviewStatus.UNREVIEWED or assignee is not None:
            reviews.review_status_set(
                user=people[assignee or DEMO_REVIEWERS[0]],
                session_id=sid,
                status=status,
                assignee=people[assignee] if assignee else None,
            )
        done.append(sid)
    return done, refused


def demo_reviewer() -> tuple[str, str | None]:
    """Create the dev-only ``demo`` reviewer, or refresh its permissions if it exists.

    Returns:
        (username, its new password), or (username, ``None``) when it existed (its password
        is left as it was).
    """
    user_model = get_user_model()
    # Browse every session, mark preferred branches, continue any branch in the live chat,
    # score, comment, tag and set review statuses.
    permissions = Permission.objects.filter(
        content_type__app_label=APP_LABEL,
        codename__in=(VIEW_CODENAME, CHAT_CODENAME, PREFER_CODENAME, ANNOTATE_CODENAME),
    )
    user = user_model.objects.filter(username=DEMO_USERNAME).first()
    if user is not None:
        user.user_permissions.add(*permissions)
        return DEMO_USERNAME, None
    password = secrets.token_urlsafe(12)
    user = user_model.objects.create_user(username=DEMO_USERNAME, password=password)
    user.user_permissions.add(*permissions)
    return DEMO_USERNAME, password


# ---- Traces (issue 16): latency, waterfalls and cost for the demo ----------------------------

#: (session, branch) -> the model its turns ran on (else the session's ``main`` entry). The
#: regenerated branches run cheaper (or reasoning) models, so the compare view shows the cost.
TRACE_MODELS: dict[tuple[str, str], str] = {
    ("demo/trip-planning", "main"): "gpt-4.1",
    ("demo/trip-planning", "tokyo-instead"): "gpt-4o-mini",
    ("demo/trip-planning", "tokyo/nikko-day-trip"): "o3-mini",
    ("demo/trip-planning", "bigger budget"): "gpt-4.1-mini",
    ("demo/support order A-10442", "main"): "gpt-4o",
    ("demo/support order A-10442", "exchange"): "gpt-4o-mini",
    ("demo/research-rag", "main"): "gpt-4.1",
    ("demo/research-rag", "code-chunks"): "o3-mini",
    ("demo/research-rag", "what-if-600"): "gpt-4.1-mini",
    ("demo/weather-café ☕", "main"): "gpt-4o-mini",
    ("demo/math-homework", "main"): "gpt-4.1",
    ("demo/math-homework", "twenty-years"): "o3-mini",
    (LONG_SESSION_ID, "main"): "gpt-4o-mini",
    (LONG_SESSION_ID, "retry-from-300"): "gpt-4.1",
}

#: Turns recorded without a trace (as if imported from an SDK file): the page says so.
UNTRACED: frozenset[tuple[str, str, int]] = frozenset(
    {("demo/math-homework", "main", 2), ("demo/math-homework", "main", 3)}
)

#: (session, branch, turn): its first tool call fails (the model then retries it).
FAILING_TOOL = ("demo/support order A-10442", "main", 3)
#: (session, branch, turn): the triage agent hands off to a specialist before answering.
HANDOFF = ("demo/support order A-10442", "main", 1)

_SPAN_ID = "span_{:024x}"


def _trace_id(*parts: object) -> str:
    return "trace_" + hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:32]


@dataclass
class _TraceBuilder:
    """The spans of one demo turn, laid end to end from ``start`` (seeded random timings)."""

    trace_id: str
    model: str
    start: datetime
    rng: random.Random
    spans: list[AgentSpan] = field(default_factory=list)
    clock: float = 0.0  # ms since the trace's start

    def _id(self) -> str:
        return _SPAN_ID.format(self.rng.getrandbits(96))

    def add(
        self,
        kind: str,
        name: str,
        duration: float,
        *,
        parent: str | None,
        start: float | None = None,
        **fields: Any,
    ) -> AgentSpan:
        begin = self.clock if start is None else start
        span = AgentSpan(
            span_id=self._id(),
            trace_id=self.trace_id,
            parent_id=parent,
            kind=kind,
            name=name,
            started_at=self.start + timedelta(milliseconds=begin),
            ended_at=self.start + timedelta(milliseconds=begin + duration),
            duration_ms=round(duration, 3),
            **fields,
        )
        self.spans.append(span)
        return span

    def model_call(self, parent: str, tokens: tuple[int, int, int, int]) -> None:
        slow = 2.0 if self.model.startswith("o") else 1.0  # reasoning models think longer
        duration = min(3000.0, self.rng.uniform(400, 1500) * slow + tokens[1] * 2)
        inp, out, cached, reasoning = tokens
        usage = {
            "input_tokens": inp,
            "output_tokens": out,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens_details": {"reasoning_tokens": reasoning},
        }
        self.add(
            SpanKind.RESPONSE,
            self.model,
            duration,
            parent=parent,
            model=self.model,
            input_tokens=inp,
            output_tokens=out,
            cached_input_tokens=cached,
            reasoning_tokens=reasoning,
            data={"type": "response", "usage": usage, "withheld": True},
        )
        self.clock += duration + self.rng.uniform(2, 12)

    def tool_call(self, parent: str, name: str, error: str | None = None) -> None:
        duration = self.rng.uniform(50, 800)
        self.add(
            SpanKind.FUNCTION,
            name,
            duration,
            parent=parent,
            error={"message": "Error running tool", "data": {"tool_name": name, "error": error}}
            if error
            else None,
            data={"type": "function", "name": name, "withheld": True},
        )
        self.clock += duration + self.rng.uniform(1, 6)


def _split(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` growing shares (each call re-reads the conversation so far)."""
    weights = list(range(1, parts + 1))
    shares = [total * w // sum(weights) for w in weights]
    shares[-1] += total - sum(shares)
    return shares


def _turn_trace(
    sid: str, branch: str, turn: int, tools: list[str], start: datetime, tokens: tuple[int, ...]
) -> tuple[AgentTrace, list[AgentSpan]]:
    model = TRACE_MODELS.get((sid, branch), TRACE_MODELS.get((sid, "main"), "gpt-4o-mini"))
    trace_id = _trace_id(sid, branch, turn)
    rng = random.Random(trace_id)
    b = _TraceBuilder(trace_id=trace_id, model=model, start=start, rng=rng)
    agent_name = "triage" if (sid, branch, turn) == HANDOFF else "assistant"
    root = b.add(SpanKind.AGENT, agent_name, 0, parent=None, data={"type": "agent"})
    b.clock = rng.uniform(1, 5)
    failing = (sid, branch, turn) == FAILING_TOOL and bool(tools)
    rounds = [[name] for name in tools] + [[]]  # a model call per tool call, then the answer
    if failing:
        rounds.insert(0, [f"!{tools[0]}"])
    inp, out, cached, reasoning = (list(tokens) + [0, 0, 0, 0])[:4]
    calls = len(rounds) + ((sid, branch, turn) == HANDOFF)
    inputs, outputs = _split(max(inp, 50 * calls), calls), _split(max(out, 20 * calls), calls)
    caches, reasons = _split(cached, calls), _split(reasoning, calls)
    parent = root.span_id
    index = 0
    if (sid, branch, turn) == HANDOFF:
        b.model_call(parent, (inputs[0], outputs[0], caches[0], reasons[0]))
        index = 1
        b.add(SpanKind.HANDOFF, "triage → orders", 0.4, parent=parent, data={"type": "handoff"})
        b.clock += 1
        specialist = b.add(SpanKind.AGENT, "orders", 0, parent=None, data={"type": "agent"})
        parent = specialist.span_id
        specialist_start = b.clock
    for names in rounds:
        b.model_call(parent, (inputs[index], outputs[index], caches[index], reasons[index]))
        index += 1
        for name in names:
            if name.startswith("!"):
                b.tool_call(parent, name[1:], error="TimeoutError: no answer within 800 ms")
            else:
                b.tool_call(parent, name)
    end = b.clock
    root.ended_at = start + timedelta(milliseconds=end)
    root.duration_ms = round(end, 3)
    if (sid, branch, turn) == HANDOFF:
        specialist.started_at = start + timedelta(milliseconds=specialist_start)
        specialist.ended_at = root.ended_at
        specialist.duration_ms = round(end - specialist_start, 3)
    trace = AgentTrace(
        trace_id=trace_id,
        workflow_name="Forkview demo",
        group_id=sid,
        session_id=sid,
        branch_id=branch,
        turn=turn,
        metadata={"forkview_session": sid, "forkview_branch": branch, "forkview_turn": str(turn)},
        started_at=start,
        ended_at=start + timedelta(milliseconds=end + rng.uniform(1, 4)),
    )
    return trace, b.spans


def _session_traces(sid: str) -> tuple[list[AgentTrace], list[AgentSpan]]:
    from dashboard.review.selectors.tree import branch_tree_get

    tree = branch_tree_get(session_id=sid)
    usage = {
        (branch, turn): (
            inp or 0,
            out or 0,
            token_detail(ind, "cached_tokens"),
            token_detail(outd, "reasoning_tokens"),
        )
        for branch, turn, inp, out, ind, outd in TurnUsage.objects.for_session(sid).values_list(
            "branch_id",
            "user_turn_number",
            "input_tokens",
            "output_tokens",
            "input_tokens_details",
            "output_tokens_details",
        )
    }
    turns: dict[tuple[str, int], tuple[datetime, list[str]]] = {}
    rows = (
        MessageStructure.objects.for_session(sid)
        .order_by("sequence_number")
        .values_list("branch_id", "user_turn_number", "message_type", "tool_name", "created_at")
    )
    base = datetime.now(tz=UTC) - timedelta(days=6)
    for branch, turn, message_type, tool_name, created in rows:
        if turn is None or branch not in tree or turn < tree.nodes[branch].fork_turn:
            continue  # a turn copied from the parent branch: its trace is the parent's
        if (sid, branch, turn) in UNTRACED:
            continue
        when, tools = turns.setdefault((branch, turn), (created or base, []))
        if message_type == "function_call" and tool_name:
            tools.append(tool_name)
    traces: list[AgentTrace] = []
    spans: list[AgentSpan] = []
    for (branch, turn), (when, tools) in turns.items():
        tokens = usage.get((branch, turn), (400 + 40 * turn, 80, 0, 0))
        trace, turn_spans = _turn_trace(sid, branch, turn, tools, when, tokens)
        traces.append(trace)
        spans.extend(turn_spans)
    return traces, spans


def seed_traces() -> list[str]:
    """Write traces for each demo session that exists and has none yet (as if the SDK had
    traced its runs: models, timings, a failing tool call, a handoff); return the ids written.

    Written with ``bulk_create`` straight into ``forkview_traces``/``forkview_spans`` (the
    seed is not a live run; ``ignore_conflicts``: a second run changes nothing).
    """
    present = set(AgentSession.objects.filter(pk__in=list(SEEDS)).values_list("pk", flat=True))
    traced = set(
        AgentTrace.objects.filter(session_id__in=present)
        .values_list("session_id", flat=True)
        .distinct()
    )
    done = []
    for sid in SEEDS:
        if sid not in present or sid in traced:
            continue
        traces, spans = _session_traces(sid)
        with transaction.atomic():
            AgentTrace.objects.bulk_create(traces, batch_size=500, ignore_conflicts=True)
            AgentSpan.objects.bulk_create(spans, batch_size=500, ignore_conflicts=True)
        done.append(sid)
    return done
