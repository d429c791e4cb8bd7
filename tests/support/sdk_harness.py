"""Differential harness: run the same operation on the SDK's session and on ``DjangoSession``.

The SDK's ``AdvancedSQLiteSession`` (on its own SQLite file) is the oracle. :class:`Pair` runs
each call on both, records a value or an exception, normalises only what is inherently
different (second-resolution timestamps, the unix-seconds part of auto branch ids, the class
name in the "closed" message), and asserts the two outcomes are equal.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from agents.extensions.memory import AdvancedSQLiteSession
from agents.run_context import RunContextWrapper
from agents.usage import Usage
from django.db import connection
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

from conversations.session import DjangoSession

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
AUTO_BRANCH = re.compile(r"branch_from_turn_(-?\d+)_(\d+)")
CLOSED_MESSAGES = frozenset({"SQLiteSession is closed", "DjangoSession is closed"})

#: Readers whose dicts carry a ``created_at``/``timestamp`` to check and drop.
_TIMESTAMPED = {
    "list_branches": "created_at",
    "get_conversation_turns": "timestamp",
    "find_turns_by_content": "timestamp",
}


# ---- Items ----------------------------------------------------------------------------------


def user(content: Any, **extra: Any) -> dict[str, Any]:
    return {"role": "user", "content": content, **extra}


def assistant(text: str, item_id: str = "msg_1") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def function_call(name: str, call_id: str, arguments: str = "{}", **extra: Any) -> dict[str, Any]:
    return {
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        **extra,
    }


def function_output(call_id: str, output: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def reasoning(text: str = "thinking") -> dict[str, Any]:
    return {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": text}]}


#: One of each tool item kind the SDK labels, in a plausible order.
TOOL_ITEMS: list[Any] = [
    function_call("get_weather", "c1", '{"city": "Paris"}'),
    function_output("c1", "sunny"),
    {"type": "mcp_call", "id": "m1", "server_label": "github", "name": "search", "arguments": "{}"},
    {"type": "mcp_call", "id": "m2", "name": "bare_mcp", "arguments": "{}"},
    {"type": "mcp_call", "id": "m3", "server_label": "onlylabel", "name": "", "arguments": "{}"},
    {"type": "mcp_call", "id": "m4", "server_label": "", "name": "nolabel"},
    {"type": "mcp_call", "id": "m5", "server_label": None, "name": None},
    {"type": "mcp_approval_request", "id": "a1", "server_label": "fs", "name": "write"},
    {"type": "mcp_list_tools", "id": "l1", "server_label": "github", "tools": []},
    {"type": "computer_call", "id": "cc1", "call_id": "cc1", "action": {"type": "click"}},
    {"type": "computer_call_output", "call_id": "cc1", "output": {"type": "computer_screenshot"}},
    {"type": "web_search_call", "id": "ws1", "status": "completed"},
    {"type": "file_search_call", "id": "fs1", "queries": ["q"], "status": "completed"},
    {"type": "code_interpreter_call", "id": "ci1", "code": "1+1", "container_id": "x"},
    {"type": "shell_call", "id": "sh1", "call_id": "sh1", "action": {"commands": ["ls"]}},
    {"type": "shell_call_output", "call_id": "sh1", "output": []},
    {"type": "apply_patch_call", "id": "ap1", "call_id": "ap1", "operation": {"type": "x"}},
    {"type": "apply_patch_call_output", "call_id": "ap1", "status": "completed"},
    {"type": "tool_search_call", "id": "ts1", "arguments": {"q": "x"}},
    {"type": "tool_search_output", "id": "ts2", "tools": []},
    {"type": "custom_tool_call", "call_id": "ct1", "name": "grammar_tool", "input": "x"},
    {"type": "custom_tool_call_output", "call_id": "ct1", "output": "ok"},
    function_call("lookup", "c2", namespace="crm"),
    function_call("same", "c3", namespace="same"),
    function_call("", "c4"),
    {"type": "function_call", "call_id": "c5", "arguments": "{}"},
    {"type": "function_call", "call_id": "c6", "name": None},
    {"type": "local_shell_call", "id": "ls1", "call_id": "ls1", "action": {}},
    {"type": "image_generation_call", "id": "ig1", "status": "completed"},
    {"type": "tool_call", "name": "legacy_tool"},
    reasoning(),
]

#: Messages that are not user or assistant, and items that are not dicts at all.
OTHER_ITEMS: list[Any] = [
    {"role": "system", "content": "be brief"},
    {"role": "system", "content": "be brief", "type": "message"},
    {"role": "developer", "content": "dev note", "type": "message"},
    {"role": "developer", "content": "dev note"},
    {"type": ""},
    {"type": 7},
    {},
    "a bare string",
    42,
    [1, "two", {"three": 3}],
    None,
    True,
    3.5,
]


# ---- Usage ----------------------------------------------------------------------------------


def usage(
    requests: int = 1,
    input_tokens: int = 10,
    output_tokens: int = 5,
    *,
    cached: int = 2,
    reasoning_tokens: int = 1,
    total: int | None = None,
) -> Usage:
    return Usage(
        requests=requests,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens if total is None else total,
        input_tokens_details=InputTokensDetails(
            cached_tokens=cached, cache_write_tokens=cached + 1
        ),
        output_tokens_details=OutputTokensDetails(reasoning_tokens=reasoning_tokens),
    )


def run_result(value: Usage | None) -> Any:
    """The part of a ``RunResult`` ``store_run_usage`` reads: ``context_wrapper.usage``."""
    wrapper = RunContextWrapper(context=None)
    wrapper.usage = value  # type: ignore[assignment]
    return SimpleNamespace(context_wrapper=wrapper)


# ---- Normalisation --------------------------------------------------------------------------


def normalise_branch_ids(text: str) -> str:
    """``branch_from_turn_N_<secs>`` with the seconds replaced (the structure is kept)."""
    return AUTO_BRANCH.sub(lambda m: f"branch_from_turn_{m.group(1)}_<secs>", text)


def ordered(value: Any) -> Any:
    """A comparable form that also compares dict key order (lists of pairs)."""
    if isinstance(value, dict):
        return ("<dict>", [(k, ordered(v)) for k, v in value.items()])
    if isinstance(value, list):
        return [ordered(v) for v in value]
    if isinstance(value, tuple):
        return ("<tuple>", [ordered(v) for v in value])
    return value


def normalise_result(method: str, value: Any, *, key_order: bool = True) -> Any:
    """The comparable form of a reader's or mutator's return value.

    ``key_order=False`` (PostgreSQL, whose jsonb reorders object keys) also compares the
    preview of list content by length only; ``test_list_content_preview_key_order`` checks
    those previews exactly, so the difference is reported once rather than everywhere.
    """
    stamp = _TIMESTAMPED.get(method)
    if stamp is not None and isinstance(value, list):
        rows = []
        for row in value:
            row = dict(row)
            assert TIMESTAMP.match(str(row[stamp])), f"{method}: bad {stamp} {row[stamp]!r}"
            row[stamp] = "<ts>"
            if not key_order and "full_content" in row and not isinstance(row["full_content"], str):
                row["content"] = ("<preview of length>", len(row["content"]))
            if method == "list_branches":
                row["branch_id"] = normalise_branch_ids(row["branch_id"])
            rows.append(row)
        if method == "list_branches":
            stamps = [r["created_at"] for r in value]
            assert stamps == sorted(stamps), f"list_branches not ordered by created_at: {value}"
            # Ties at second resolution have no specified order (spec 3.8, 4.15).
            rows.sort(key=lambda r: r["branch_id"])
        value = rows
    elif method.startswith("create_branch") and isinstance(value, str):
        value = normalise_branch_ids(value)
    elif method == "get_conversation_by_turns" and isinstance(value, dict):
        # Key order is observable (turns in sequence order): compare it.
        value = list(value.items())
    if not key_order:
        return value
    return ordered(value)


@dataclass(frozen=True)
class Outcome:
    """What one call did: returned a (normalised) value, or raised."""

    value: Any = None
    error: tuple[str, str] | None = None

    def __repr__(self) -> str:
        if self.error is not None:
            return f"raised {self.error[0]}({self.error[1]!r})"
        return f"returned {self.value!r}"


def normalise_error(exc: BaseException) -> tuple[str, str]:
    message = str(exc)
    if isinstance(exc, RuntimeError) and message in CLOSED_MESSAGES:
        message = "<closed>"
    return type(exc).__name__, normalise_branch_ids(message)


@dataclass(frozen=True)
class Both:
    """A value per side (e.g. an auto branch id, whose seconds may differ)."""

    sdk: Any
    ours: Any


def _side(value: Any, side: str) -> Any:
    return getattr(value, side) if isinstance(value, Both) else value


async def outcome(method: str, call: Any, *, key_order: bool = True) -> tuple[Outcome, Any]:
    """Await ``call`` (a coroutine); return its outcome and the raw value (or None)."""
    try:
        raw = await call
    except Exception as exc:
        return Outcome(error=normalise_error(exc)), None
    return Outcome(value=normalise_result(method, raw, key_order=key_order)), raw


@dataclass
class Pair:
    """The SDK session and ours, driven in lockstep."""

    sdk: AdvancedSQLiteSession
    ours: DjangoSession
    #: False on PostgreSQL: jsonb stores object keys in its own order.
    key_order: bool = True
    comparisons: int = 0
    log: list[str] = field(default_factory=list)

    async def do(self, method: str, *args: Any, **kwargs: Any) -> Both:
        """Call ``method`` on both; assert equal outcomes; return both raw results."""
        results = []
        outcomes = []
        for side in ("sdk", "ours"):
            session = getattr(self, side)
            call = getattr(session, method)(
                *(_side(a, side) for a in args), **{k: _side(v, side) for k, v in kwargs.items()}
            )
            result, raw = await outcome(method, call, key_order=self.key_order)
            outcomes.append(result)
            results.append(raw)
        sdk_outcome, our_outcome = outcomes
        self.comparisons += 1
        self.log.append(f"{method}{args}{kwargs or ''} -> {sdk_outcome!r}")
        assert our_outcome == sdk_outcome, (
            f"{method}(*{args!r}, **{kwargs!r}) differs:\n  SDK:  {sdk_outcome!r}\n"
            f"  ours: {our_outcome!r}"
        )
        return Both(*results)

    async def branches(self) -> list[Both]:
        """Both sides' branch ids, aligned by normalised id."""
        listed = await self.do("list_branches")
        ids = [
            sorted((b["branch_id"] for b in side), key=normalise_branch_ids)
            for side in (listed.sdk, listed.ours)
        ]
        return [Both(s, o) for s, o in zip(*ids, strict=True)]

    async def check_state(self) -> None:
        """Compare every reader, on the current branch and on each existing branch."""
        branches = await self.branches()
        for kwargs in [{}, *({"branch_id": b} for b in branches)]:
            await self.do("get_items", **kwargs)
            await self.do("get_conversation_turns", **kwargs)
            await self.do("find_turns_by_content", "", **kwargs)
            by_turns = await self.do("get_conversation_by_turns", **kwargs)
            await self.do("get_tool_usage", **kwargs)
            await self.do("get_turn_usage", **kwargs)
            for turn in sorted({0, *by_turns.sdk, max(by_turns.sdk or [0]) + 1}):
                await self.do("get_turn_usage", turn, **kwargs)
            if kwargs:
                await self.do("get_session_usage", kwargs["branch_id"])
        await self.do("get_session_usage")


# ---- Fixture helpers ---------------------------------------------------------------------------

FROZEN_SECONDS = 1_700_000_000.7


@contextmanager
def pair_factory(tmp_path: Path) -> Iterator[Callable[..., Pair]]:
    """Make pairs; all share one SDK file, so two pairs on one session id are two instances."""
    pairs: list[Pair] = []
    key_order = connection.vendor == "sqlite"

    def make(session_id: str = "sess", **kwargs: Any) -> Pair:
        sdk = AdvancedSQLiteSession(
            session_id=session_id, db_path=tmp_path / "sdk.sqlite3", create_tables=True, **kwargs
        )
        pair = Pair(sdk, DjangoSession(session_id=session_id, **kwargs), key_order=key_order)
        pairs.append(pair)
        return pair

    try:
        yield make
    finally:
        for pair in pairs:
            pair.sdk.close()
            pair.ours.close()


def freeze_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Freeze both modules' ``time.time()``, so auto branch ids compare exactly."""
    clock = SimpleNamespace(time=lambda: FROZEN_SECONDS)
    monkeypatch.setattr("agents.extensions.memory.advanced_sqlite_session.time", clock)
    monkeypatch.setattr("conversations.session.time", clock)
