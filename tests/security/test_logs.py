"""No model data in logs (issue 12, hole 9): ``DjangoSession`` logs what the SDK's own
``AdvancedSQLiteSession`` logs, and no more, under the SDK's ``DONT_LOG_MODEL_DATA`` policy.

Every test runs one operation on both classes (each with its own logger, both captured), with
the user's secret in the items, and compares: with the policy on (the SDK's default) neither
log holds the secret; with it off, ours holds it only where the SDK's does. The live chat's
log line for a failed turn is checked too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from agents import Agent, _debug
from agents.extensions.memory.advanced_sqlite_session import AdvancedSQLiteSession
from agents.testing import ScriptedModel
from agents.usage import Usage
from asgiref.sync import sync_to_async
from django.db import connections

from conversations.permissions import CHAT, VIEW
from conversations.session import DjangoSession
from dashboard.chat import consumers
from dashboard.chat.turns import log_turn_failure
from tests.dashboard.chat.test_consumers import _make_user, open_chat, receive_until

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

SECRET = "TopSecretPlan42"
SDK_LOGGER = "forkview.tests.logs.sdk"
OUR_LOGGER = "forkview.tests.logs.ours"

Operation = Callable[[Any], Awaitable[Any]]


@pytest_asyncio.fixture(autouse=True)
async def _close_worker_connections():
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture(params=[True, False], ids=["policy-on", "policy-off"])
def dont_log(request, monkeypatch) -> bool:
    """The SDK's ``DONT_LOG_MODEL_DATA`` (and tool data) policy, read at call time by both."""
    monkeypatch.setattr(_debug, "DONT_LOG_MODEL_DATA", request.param)
    monkeypatch.setattr(_debug, "DONT_LOG_TOOL_DATA", request.param)
    return bool(request.param)


def _text(records: list[logging.LogRecord]) -> str:
    """Everything a handler would write: messages, exception text, tracebacks, extras."""
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    lines = []
    for record in records:
        lines.append(formatter.format(record))
        lines.extend(repr(value) for key, value in vars(record).items() if key.startswith("openai"))
    return "\n".join(lines)


class Sides:
    """The SDK's session and ours, on the same session id, each with its own logger."""

    def __init__(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.sdk = AdvancedSQLiteSession(
            session_id="logs",
            db_path=tmp_path / "sdk.sqlite3",
            create_tables=True,
            logger=logging.getLogger(SDK_LOGGER),
        )
        self.ours = DjangoSession(session_id="logs", logger=logging.getLogger(OUR_LOGGER))

    async def run(self, operation: Operation) -> tuple[str, str]:
        """``operation`` on each side; what each side logged (errors are the caller's)."""
        logged = []
        for name, session in ((SDK_LOGGER, self.sdk), (OUR_LOGGER, self.ours)):
            self.caplog.clear()
            try:
                await operation(session)
            except Exception:
                pass  # both sides' errors are compared by the SDK parity suite, not here
            logged.append(_text([r for r in self.caplog.records if r.name == name]))
        return logged[0], logged[1]

    def close(self) -> None:
        self.sdk.close()
        self.ours.close()


@pytest.fixture
def sides(tmp_path, caplog) -> Iterator[Sides]:
    caplog.set_level(logging.DEBUG)
    pair = Sides(tmp_path, caplog)
    try:
        yield pair
    finally:
        pair.close()


async def _history(session: Any) -> None:
    for text in (f"{SECRET} first", f"{SECRET} second"):
        await session.add_items(
            [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}]
        )


def _check(sdk_log: str, our_log: str, dont_log: bool) -> None:
    if dont_log:
        assert SECRET not in sdk_log, "the SDK itself logged model data: the harness is wrong"
        assert SECRET not in our_log, f"model data logged with DONT_LOG_MODEL_DATA on:\n{our_log}"
    elif SECRET in our_log:
        assert SECRET in sdk_log, f"we log model data the SDK does not:\n{our_log}"


# ---- DjangoSession against the SDK's class ------------------------------------------------------


async def test_create_branch_from_turn_logs_content_only_as_the_sdk_does(sides, dont_log):
    await sides.run(_history)

    async def branch(session: Any) -> None:
        await session.create_branch_from_turn(2, "fork")

    sdk_log, our_log = await sides.run(branch)
    _check(sdk_log, our_log, dont_log)
    # The same line, at the same level, on both sides; with the policy off both name the turn.
    assert sdk_log.split(" ", 1)[0] == our_log.split(" ", 1)[0] == "DEBUG"
    assert "fork" in sdk_log and "fork" in our_log
    assert (SECRET in our_log) == (SECRET in sdk_log) == (not dont_log)


async def test_create_branch_from_content_is_redacted(sides, dont_log):
    await sides.run(_history)

    async def branch(session: Any) -> None:
        await session.create_branch_from_content("second", "found")

    _check(*await sides.run(branch), dont_log)


async def test_failed_add_items_is_redacted(sides, dont_log):
    """Items that cannot be stored: unserialisable (the class name is the secret), NUL."""
    await sides.run(_history)
    unserialisable = type(SECRET, (), {})()

    async def add_bad(session: Any) -> None:
        await session.add_items([{"role": "user", "content": unserialisable}])

    async def add_nul(session: Any) -> None:
        await session.add_items([{"role": "user", "content": f"{SECRET} \x00 nul"}])

    for operation in (add_bad, add_nul):
        _check(*await sides.run(operation), dont_log)


async def test_failed_usage_store_is_redacted(sides, dont_log):
    await sides.run(_history)

    class Broken:
        @property
        def context_wrapper(self) -> Any:
            raise RuntimeError(f"usage unavailable for {SECRET} first")

    async def store(session: Any) -> None:
        await session.store_run_usage(Broken())

    sdk_log, our_log = await sides.run(store)
    _check(sdk_log, our_log, dont_log)
    assert "Failed to store session usage" in sdk_log and "Failed to store session usage" in our_log


async def test_usage_details_serialise_warning_is_redacted(sides, dont_log):
    await sides.run(_history)
    usage = Usage(requests=1, input_tokens=3, output_tokens=1, total_tokens=4)
    usage.input_tokens_details = SimpleNamespace(cached_tokens=type(SECRET, (), {})())  # type: ignore[assignment]
    result = SimpleNamespace(context_wrapper=SimpleNamespace(usage=usage))

    async def store(session: Any) -> None:
        await session.store_run_usage(result)

    sdk_log, our_log = await sides.run(store)
    _check(sdk_log, our_log, dont_log)
    assert "WARNING" in sdk_log and "WARNING" in our_log  # both warned about the details


# ---- The live chat ---------------------------------------------------------------------------


def _failure() -> RuntimeError:
    try:
        try:
            raise KeyError(f"{SECRET} in the cause")
        except KeyError as cause:
            raise RuntimeError(f"upstream rejected the input: {SECRET} launch codes") from cause
    except RuntimeError as exc:
        return exc


async def test_turn_failure_log_is_redacted_under_the_policy(caplog, dont_log):
    caplog.set_level(logging.DEBUG)
    log_turn_failure(logging.getLogger(OUR_LOGGER), "sess", "main", _failure())
    text = _text(caplog.records)
    assert "Chat turn failed on 'sess' / 'main'" in text and "RuntimeError" in text
    assert "Traceback" in text or "File " in text  # still debuggable: where it failed
    assert (SECRET in text) == (not dont_log)


_AGENT: dict[str, Any] = {}


def failing_agent() -> Any:
    """The FORKVIEW_AGENT factory of the live-chat test."""
    return _AGENT["agent"]


async def test_chat_turn_failure_does_not_log_the_message(
    caplog, monkeypatch, settings, django_user_model
):
    """A model that fails with the user's text in its error (as an API echoing its input
    does): the consumer's log line holds neither the text nor the error's message."""
    monkeypatch.setattr(_debug, "DONT_LOG_MODEL_DATA", True)
    _AGENT["agent"] = Agent(name="failing", model=ScriptedModel([_failure()]))
    settings.FORKVIEW_AGENT = f"{__name__}.failing_agent"
    user = await sync_to_async(_make_user)(django_user_model, "leaky", CHAT, VIEW)
    caplog.set_level(logging.DEBUG)
    try:
        chat = await open_chat(user, "logs-chat")
        await chat.send_json_to({"type": "user_message", "text": f"{SECRET} launch codes"})
        error = (await receive_until(chat, "turn_complete", "error"))[-1]
        await chat.disconnect()
        await asyncio.gather(*consumers._RUNNING_TURNS)
    finally:
        _AGENT.clear()
    assert error["type"] == "error"  # the user is still told what failed (their own text)
    text = _text(caplog.records)
    assert "Chat turn failed" in text
    assert SECRET not in text, f"the failed turn's log holds model data:\n{text}"
