"""Which agent the live chat runs, and on which model backend.

The agent is a dotted path in ``settings.FORKVIEW_AGENT`` (env ``FORKVIEW_AGENT``): either an
``agents.Agent`` instance or a zero-argument factory returning one. Teams plug in their own
agent, with their own tools, without touching Forkview::

    # myteam/forkview_agent.py
    from agents import Agent
    from dashboard.agents import default_model

    def support_agent() -> Agent:
        return Agent(name="support", instructions="...", tools=[...], model=default_model())

    # environment
    FORKVIEW_AGENT=myteam.forkview_agent.support_agent

The model backend follows the environment (``default_model``):

- ``OPENAI_BASE_URL`` set: any OpenAI-compatible Chat Completions server (Ollama, vLLM,
  LM Studio, ...) through the SDK's ``OpenAIChatCompletionsModel``; ``FORKVIEW_MODEL`` names
  the model, ``OPENAI_API_KEY`` is sent if set (most local servers ignore it).
- ``OPENAI_API_KEY`` set: OpenAI's Responses API, model ``FORKVIEW_MODEL``.
- neither: the built-in offline demo model (``dashboard.offline_model.OfflineModel``).

``backend_label()`` names the active backend for the chat page.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import os
from datetime import UTC, datetime
from typing import Any

from agents import Agent, ModelSettings, RunConfig, function_tool
from agents.models.interface import Model
from channels.db import database_sync_to_async
from django.conf import settings
from django.utils.module_loading import import_string

from conversations.models import MessageStructure

from .offline_model import OFFLINE_LABEL, OfflineModel

__all__ = [
    "backend_label",
    "calculate",
    "current_time",
    "default_model",
    "default_model_settings",
    "demo_agent",
    "get_agent",
    "run_config",
    "search_sessions",
]

INSTRUCTIONS = (
    "You are Forkview's demo assistant. Be brief. Use current_time for the date or time, "
    "calculate for arithmetic (never do it in your head), get_weather for the weather in a "
    "city, and search_sessions to find past conversations stored in Forkview."
)


# ---- Backends ------------------------------------------------------------------------------


def _env(name: str) -> str:
    """A setting, else the environment variable of the same name, else ``""``."""
    return str(getattr(settings, name, "") or os.environ.get(name, "") or "")


def default_model() -> Model | str:
    """The model the environment selects (see the module docstring)."""
    base_url = _env("OPENAI_BASE_URL")
    model_name = _env("FORKVIEW_MODEL") or "gpt-4.1-mini"
    if base_url:
        from agents import OpenAIChatCompletionsModel
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=base_url, api_key=_env("OPENAI_API_KEY") or "not-needed")
        return OpenAIChatCompletionsModel(model=model_name, openai_client=client)
    if _env("OPENAI_API_KEY"):
        return model_name
    delay_ms = float(getattr(settings, "FORKVIEW_OFFLINE_TOKEN_DELAY_MS", 12))
    return OfflineModel(token_delay=delay_ms / 1000)


def default_model_settings() -> ModelSettings:
    """Settings for ``default_model()``: ask OpenAI-compatible servers for token usage.

    The SDK requests ``stream_options.include_usage`` only from api.openai.com; Ollama, vLLM
    and LM Studio support it too, and without it a streamed turn reports 0 tokens.
    """
    return ModelSettings(include_usage=True) if _env("OPENAI_BASE_URL") else ModelSettings()


def model_label(model: Model | str | None) -> str:
    """A human label for a model object or name."""
    if isinstance(model, OfflineModel):
        return OFFLINE_LABEL
    if model is None:
        return "OpenAI (SDK default model)"
    if isinstance(model, str):
        return f"OpenAI {model}"
    name = getattr(model, "model", None) or type(model).__name__
    client = getattr(model, "_client", None)
    base_url = str(getattr(client, "base_url", "") or "")
    if base_url:
        return f"{name} via {base_url.rstrip('/')}"
    return str(name)


def backend_label(agent: Agent[Any] | None = None) -> str:
    """The label of the backend the chat runs on (of ``agent``, else of the configured one)."""
    agent = agent if agent is not None else get_agent()
    return model_label(agent.model)


def run_config(agent: Agent[Any] | None = None) -> RunConfig:
    """The ``RunConfig`` for chat turns: tracing only goes to OpenAI when we talk to OpenAI."""
    uses_openai = bool(_env("OPENAI_API_KEY")) and not _env("OPENAI_BASE_URL")
    return RunConfig(tracing_disabled=not uses_openai, workflow_name="Forkview chat")


def get_agent() -> Agent[Any]:
    """The agent named by ``settings.FORKVIEW_AGENT`` (an ``Agent`` or a factory of one).

    Raises:
        ImportError: The dotted path does not import.
        TypeError: It names neither an ``Agent`` nor a callable returning one.
    """
    target = import_string(settings.FORKVIEW_AGENT)
    agent = target if isinstance(target, Agent) else target() if callable(target) else None
    if not isinstance(agent, Agent):
        raise TypeError(f"FORKVIEW_AGENT={settings.FORKVIEW_AGENT!r} is not an Agent or factory")
    return agent


# ---- Demo tools ----------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


@function_tool
def current_time() -> str:
    """Return the current date and time in UTC (ISO 8601)."""
    return _now().strftime("%Y-%m-%d %H:%M:%S UTC")


_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_MAX_EXPRESSION = 200
_MAX_EXPONENT = 100
_MAX_MAGNITUDE = 1e100


def safe_eval(expression: str) -> int | float:
    """Evaluate arithmetic (+ - * / // % ** and parentheses) without ``eval``.

    Raises:
        ValueError: Anything but numbers and those operators, or a result too large.
    """
    if len(expression) > _MAX_EXPRESSION:
        raise ValueError("expression too long")
    tree = ast.parse(expression.replace("^", "**"), mode="eval")

    def walk(node: ast.AST) -> int | float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](walk(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
                raise ValueError("exponent too large")
            value = _BINARY[type(node.op)](left, right)
            if abs(value) > _MAX_MAGNITUDE:
                raise ValueError("result too large")
            return value
        raise ValueError(f"unsupported element: {type(node).__name__}")

    value = walk(tree)
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        return int(value)
    return value


def evaluate(expression: str) -> str:
    """Evaluate an arithmetic expression exactly (numbers, + - * / // % ** and parentheses).

    Args:
        expression: For example ``2+2*3`` or ``(1.5+2)**2``.
    """
    try:
        value = safe_eval(expression)
    except ZeroDivisionError:
        return "error: division by zero"
    except (ValueError, SyntaxError) as exc:
        return f"error: {exc}"
    return f"{value:.10g}" if isinstance(value, float) else str(value)


calculate = function_tool(evaluate, name_override="calculate")


_SEARCH_WINDOW = 2000  # newest user messages scanned
_SEARCH_HITS = 5


def _search_sessions_sync(query: str) -> list[tuple[str, int | None, str]]:
    """(session id, turn, text) of the newest user messages containing ``query``."""
    needle = query.casefold()
    rows = (
        MessageStructure.objects.filter(message_type="user")
        .order_by("-message_id")
        .values_list("session_id", "message_id", "branch_turn_number", "message__message_data")[
            :_SEARCH_WINDOW
        ]
    )
    hits: list[tuple[str, int | None, str]] = []
    seen: set[int] = set()
    for session_id, message_id, turn, data in rows:
        if message_id in seen:
            continue  # the same message on several branches
        seen.add(message_id)
        content = data.get("content") if isinstance(data, dict) else None
        text = content if isinstance(content, str) else ""
        if isinstance(content, list):
            text = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        if needle in text.casefold() or needle in session_id.casefold():
            hits.append((session_id, turn, " ".join(text.split())[:80]))
            if len(hits) >= _SEARCH_HITS:
                break
    return hits


@function_tool
async def search_sessions(query: str) -> str:
    """Search past Forkview sessions for user messages (or session ids) containing a phrase.

    Args:
        query: The words to look for (case-insensitive).
    """
    query = query.strip()
    if not query:
        return "error: empty query"
    # Tools run on the event loop: the ORM query runs in a worker thread.
    hits = await database_sync_to_async(_search_sessions_sync)(query)
    if not hits:
        return "no sessions found."
    return "; ".join(f"{sid} (turn {turn}): {text}" for sid, turn, text in hits)


# Offline demo readings (the seeded conversations use them too); other cities get a mild default.
DEMO_WEATHER = {
    "lisbon": (22, "sunny", 48),
    "oslo": (3, "light snow", 81),
    "tokyo": (16, "overcast", 62),
    "são paulo": (27, "thunderstorms", 88),
    "nairobi": (24, "partly cloudy", 55),
}


@function_tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """Current weather for a city (offline demo data), as JSON."""
    temp, sky, humidity = DEMO_WEATHER.get(city.strip().lower(), (18, "clear", 50))
    if unit == "fahrenheit":
        temp = round(temp * 9 / 5 + 32)
    # JSON text, not a dict: the SDK stores a dict's Python repr, which reads badly in the
    # tool inspector and differs from what the live stream shows.
    return json.dumps(
        {"city": city, "temperature": temp, "unit": unit, "conditions": sky, "humidity": humidity},
        ensure_ascii=False,
    )


# ---- The demo agent ------------------------------------------------------------------------


def demo_agent() -> Agent[Any]:
    """Forkview's demo assistant: four real tools on the environment's model."""
    return Agent(
        name="Forkview assistant",
        instructions=INSTRUCTIONS,
        tools=[current_time, calculate, get_weather, search_sessions],
        model=default_model(),
        model_settings=default_model_settings(),
    )
