"""The demo agent's tools, and what the offline model understands about each of them.

Four real ``@function_tool`` tools: ``current_time``, ``calculate`` (a safe arithmetic
evaluator, no ``eval``), ``get_weather`` (offline readings, shared with the seeded demo) and
``search_sessions`` (the review pages' search selector, for the acting user: it reads the
user from the SDK run context, a :class:`dashboard.chat.context.ChatContext`, and finds nothing
for a turn without one or for a user who may not view sessions). Each registers an
:class:`~dashboard.demo.model.OfflineIntent`, so the offline model calls it for prompts such as
"what time is it", "calculate 2+2*3", "weather in Lisbon" or "search sessions for refund"
and phrases its output; the model itself knows no tool by name.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from agents import RunContextWrapper, function_tool
from channels.db import database_sync_to_async

from conversations.items import DecodeError, decode
from conversations.models import MAIN_BRANCH
from conversations.permissions import can_view
from dashboard.review.selectors import SearchHit, search_hits

from .model import Arguments, OfflineIntent, register_intent

__all__ = [
    "DEMO_TOOLS",
    "DEMO_WEATHER",
    "NOT_ALLOWED",
    "calculate",
    "current_time",
    "evaluate",
    "get_weather",
    "safe_eval",
    "search_sessions",
]


# ---- current_time ------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


@function_tool
def current_time() -> str:
    """Return the current date and time in UTC (ISO 8601)."""
    return _now().strftime("%Y-%m-%d %H:%M:%S UTC")


# ---- calculate ---------------------------------------------------------------------------------

_Number = int | float
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_MAX_EXPRESSION = 200
_MAX_EXPONENT = 100
_MAX_MAGNITUDE = 1e100


def safe_eval(expression: str) -> _Number:
    """Evaluate arithmetic (+ - * / // % ** and parentheses) without ``eval``.

    Raises:
        ValueError: Anything but numbers and those operators, or a result too large.
    """
    if len(expression) > _MAX_EXPRESSION:
        raise ValueError("expression too long")
    tree = ast.parse(expression.replace("^", "**"), mode="eval")

    def walk(node: ast.AST) -> _Number:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return cast(_Number, node.value)  # checked just above (bool, complex excluded)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            unary: _Number = _UNARY[type(node.op)](walk(node.operand))
            return unary
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
                raise ValueError("exponent too large")
            value: _Number = _BINARY[type(node.op)](left, right)
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


# ---- get_weather -------------------------------------------------------------------------------

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


# ---- search_sessions ---------------------------------------------------------------------------

_SEARCH_HITS = 5


def _hit_line(hit: SearchHit) -> str:
    """One hit as plain text: where it is (session, branch unless main, turn), and its snippet."""
    where = (
        f"turn {hit.turn}" if hit.branch_id == MAIN_BRANCH else f"{hit.branch_id}, turn {hit.turn}"
    )
    return f"{hit.session_id} ({where}): {hit.snippet}"


#: What ``search_sessions`` answers when the turn has no acting user who may view sessions.
NOT_ALLOWED = (
    "error: not allowed: this chat's user may not view Forkview sessions, so nothing was searched."
)


@database_sync_to_async
def _search(user: object, query: str) -> tuple[SearchHit, ...] | None:
    """The hits ``user`` may see (``None``: may see none). Sync ORM: runs in a worker thread."""
    if not can_view(user):
        return None
    return search_hits(query=query, limit=_SEARCH_HITS)


@function_tool
async def search_sessions(wrapper: RunContextWrapper[Any], query: str) -> str:
    """Search the messages of past Forkview sessions for words or a phrase.

    Args:
        query: The words to look for (case-insensitive).
    """
    query = query.strip()
    if not query:
        return "error: empty query"
    # Who is acting comes from the run context (the chat passes a ChatContext); no context,
    # no user: nothing is readable. Never an unrestricted query.
    user = getattr(wrapper.context, "user", None)
    hits = await _search(user, query)
    if hits is None:
        return NOT_ALLOWED
    if not hits:
        return "no sessions found."
    return "; ".join(map(_hit_line, hits))


DEMO_TOOLS = (current_time, calculate, get_weather, search_sessions)


# ---- What the offline model understands ---------------------------------------------------------

_TIME = re.compile(
    r"\b(what time|current time|time is it|the time|what'?s the date|today'?s date)\b"
)
_CALC = re.compile(
    r"\b(?:calculate|calc|compute|evaluate|what is|what's)\s+([-+*/%().\d\s^e]+?)\s*[?.!]*$"
)
# "weather in Lisbon?", "what's the weather like for São Paulo": the city is what follows.
_WEATHER = re.compile(r"\bweather\b.*?\b(?:in|for|at)\s+([^?.!]+?)\s*[?.!]*$", re.IGNORECASE)
_SEARCH = re.compile(
    r"\b(?:search|find|look up)\s+(?:my\s+|past\s+|the\s+|old\s+)*"
    r"(?:sessions?|conversations?|chats?)\s+(?:for|about|with|mentioning)\s+(.+?)\s*[?.!]*$"
)


def _asks_time(text: str) -> Arguments | None:
    return {} if _TIME.search(text.lower()) else None


def _asks_calculation(text: str) -> Arguments | None:
    match = _CALC.search(text.lower())
    if match is None:
        return None
    expression = match.group(1).strip()
    return {"expression": expression} if re.search(r"\d", expression) else None


def _asks_weather(text: str) -> Arguments | None:
    match = _WEATHER.search(text)
    city = match.group(1).strip().strip("\"'") if match else ""
    return {"city": city} if city else None


def _asks_search(text: str) -> Arguments | None:
    match = _SEARCH.search(text.lower())
    if match is None:
        return None
    return {"query": text[match.start(1) : match.end(1)].strip().strip("\"'")}


def _weather_answer(arguments: Arguments, output: str) -> str | None:
    try:
        report = decode(output)
    except DecodeError:
        return None
    if not isinstance(report, dict):
        return None
    unit = "°F" if report.get("unit") == "fahrenheit" else "°C"
    return (
        f"{report.get('city', arguments.get('city', 'There'))}: {report.get('temperature')}{unit}, "
        f"{report.get('conditions')}, humidity {report.get('humidity')}%."
    )


# Registration order is the help text's order; priority decides when two could match.
register_intent(
    OfflineIntent(
        tool="current_time",
        match=_asks_time,
        answer=lambda arguments, output: f"The current time is {output}.",
        example="what time is it",
        priority=30,
    )
)
register_intent(
    OfflineIntent(
        tool="calculate",
        parameters=("expression",),
        match=_asks_calculation,
        answer=lambda arguments, output: f"{arguments.get('expression', 'That')} = {output}.",
        example="calculate 2+2*3",
        priority=20,
    )
)
register_intent(
    OfflineIntent(
        tool="get_weather",
        parameters=("city",),
        match=_asks_weather,
        answer=_weather_answer,
        example="weather in Lisbon",
        priority=40,
    )
)
register_intent(
    OfflineIntent(
        tool="search_sessions",
        parameters=("query",),
        match=_asks_search,
        answer=lambda arguments, output: (
            f'Search results for "{arguments.get("query", "")}": {output}'
        ),
        example="search sessions for refund",
        priority=10,
    )
)
