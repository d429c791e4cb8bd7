"""Staff edits and live chat turns exclude each other (issue 12, hole 4).

Real turns (the real ``Runner`` with the offline model; the turn calls a tool that holds it
open until the test lets go), real staff services, on SQLite and PostgreSQL, with the
database's own locks and with Redis, in one process and across processes.

- A staff edit of a session or branch with a running turn waits for it (bounded), then runs;
  a turn that outlasts the wait gets the edit refused with a clear ``ServiceError``.
- While a staff edit runs, a new turn on what it edits is ``busy``.
- A writer that bypasses the locks (the SDK API of another instance, any process) can still
  remove the branch or the session mid-turn: the turn then stores nothing and raises
  ``TurnRefused``; it never recreates the session or the branch, nor lands on a renamed id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from agents import Agent, function_tool
from asgiref.sync import sync_to_async
from django.db import connection, connections, transaction

from conversations import services
from conversations.models import (
    AgentMessage,
    AgentSession,
    MessageStructure,
    TurnUsage,
)
from conversations.session import DjangoSession
from conversations.turnlocks import staff_exclusion
from conversations.writes import SessionWriter
from dashboard.chat.locks import turn_guard
from dashboard.chat.turns import TurnRefused, run_turn, turn_anchor
from dashboard.demo.model import OfflineModel
from tests.support.databases import database_url

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
RUNNING = "live chat turn is running"


@pytest_asyncio.fixture(autouse=True)
async def _close_worker_connections():
    yield
    await sync_to_async(connections.close_all)()


def _backends() -> list[Any]:
    return [
        pytest.param("database", id=connection.vendor),
        pytest.param(
            "redis",
            id="redis",
            marks=pytest.mark.skipif(
                not os.environ.get("REDIS_URL"), reason="REDIS_URL is not set (no Redis server)"
            ),
        ),
    ]


@pytest.fixture(params=_backends())
def backend(request, settings):
    settings.FORKVIEW_TURN_LOCK = request.param
    settings.FORKVIEW_STAFF_TURN_WAIT = 0.3
    return request.param


# ---- A turn the test holds open -----------------------------------------------------------------


class Held:
    """A real turn (Runner + offline model) paused inside a tool call until ``release()``."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.gate = asyncio.Event()

        @function_tool
        async def hold_turn() -> str:
            """Hold the turn open until the test lets it finish."""
            self.started.set()
            await self.gate.wait()
            return "released"

        self.agent = Agent(name="held", model=OfflineModel(token_delay=0), tools=[hold_turn])

    def release(self) -> None:
        self.gate.set()


@contextlib.asynccontextmanager
async def held_turn(
    session_id: str, branch_id: str, *, guarded: bool = True
) -> AsyncIterator[tuple[Held, asyncio.Task[Any]]]:
    """Start a turn on (session, branch) as the chat consumer does (under ``turn_guard``),
    wait until it is inside its tool call, yield it; the task's result is the outcome."""
    held = Held()
    anchor = await turn_anchor(session_id=session_id, branch_id=branch_id)

    async def turn() -> Any:
        async with contextlib.AsyncExitStack() as stack:
            if guarded:
                acquired = await stack.enter_async_context(turn_guard(session_id, branch_id))
                assert acquired, "the turn guard was busy"
            return await run_turn(
                session_id=session_id,
                branch_id=branch_id,
                input="please hold_turn",
                agent=held.agent,
                notify_viewers=False,
                anchor=anchor,
            )

    task = asyncio.ensure_future(turn())
    try:
        await asyncio.wait_for(held.started.wait(), 20)
        yield held, task
    finally:
        held.release()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 20)


async def seed(session_id: str) -> None:
    """main: 2 turns; branch ``b``: main's turn 1 + a turn of its own."""
    session = DjangoSession(session_id=session_id)
    for n in (1, 2):
        await session.add_items(
            [{"role": "user", "content": f"main {n}"}, {"role": "assistant", "content": "ok"}]
        )
    await session.create_branch_from_turn(2, "b")
    await session.add_items(
        [{"role": "user", "content": "b 2"}, {"role": "assistant", "content": "ok b"}]
    )


@sync_to_async
def snapshot(session_id: str) -> dict[str, Any]:
    structure = MessageStructure.objects.filter(session_id=session_id)
    return {
        "session": AgentSession.objects.filter(session_id=session_id).exists(),
        "messages": AgentMessage.objects.filter(session_id=session_id).count(),
        "branches": {
            b: structure.filter(branch_id=b).count()
            for b in sorted(set(structure.values_list("branch_id", flat=True)))
        },
        "usage": TurnUsage.objects.filter(session_id=session_id).count(),
    }


def staff(function: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Run a staff service in its own thread (as an admin request would), off the loop."""

    def call() -> Any:
        try:
            return function(**kwargs)
        finally:
            connections.close_all()

    return sync_to_async(call, thread_sensitive=False)()


@sync_to_async
def ids(session_id: str, branch_id: str) -> dict[str, int]:
    rows = MessageStructure.objects.filter(session_id=session_id, branch_id=branch_id)
    last = rows.order_by("-sequence_number").first()
    assert last is not None
    return {"row_id": last.pk, "message_id": last.message_id, "turn": last.user_turn_number or 0}


# ---- Staff edits wait for a running turn, or are refused ----------------------------------------


async def _edits(session_id: str) -> dict[str, Callable[[], Any]]:
    """Every staff write of a session's rows, aimed at branch ``b``'s running turn."""
    last = await ids(session_id, "b")
    return {
        "branch_rename": lambda: staff(
            services.branch_rename, session_id=session_id, old="b", new="renamed"
        ),
        "branch_delete": lambda: staff(
            services.branch_delete, session_id=session_id, branch_id="b"
        ),
        "session_delete": lambda: staff(services.session_delete, session_id=session_id),
        "message_update": lambda: staff(
            services.message_update,
            message_id=last["message_id"],
            item={"role": "assistant", "content": "edited"},
        ),
        "message_delete": lambda: staff(services.message_delete, message_id=last["message_id"]),
        "structure_row_delete": lambda: staff(services.structure_row_delete, row_id=last["row_id"]),
        "turn_usage_save": lambda: staff(
            services.turn_usage_save,
            session_id=session_id,
            branch_id="b",
            user_turn_number=last["turn"],
            requests=1,
            input_tokens=1,
            output_tokens=1,
            total_tokens=None,
            input_tokens_details=None,
            output_tokens_details=None,
        ),
    }


EDITS = [
    "branch_rename",
    "branch_delete",
    "session_delete",
    "message_update",
    "message_delete",
    "structure_row_delete",
    "turn_usage_save",
]


@pytest.mark.parametrize("edit", EDITS)
async def test_staff_edit_is_refused_while_a_turn_outlasts_the_wait(backend, edit):
    sid = f"race-refuse-{edit}"
    await seed(sid)
    edits = await _edits(sid)
    before = await snapshot(sid)
    async with held_turn(sid, "b") as (held, task):
        started = time.monotonic()
        with pytest.raises(services.ServiceError, match=RUNNING) as refused:
            await edits[edit]()
        assert time.monotonic() - started >= 0.25  # it waited first
        assert "'b'" in str(refused.value) or f"'{sid}'" in str(refused.value)
        assert await snapshot(sid) == before  # nothing changed
        held.release()
        outcome = await task
    assert outcome.branch_id == "b" and outcome.turn == 3
    after = await snapshot(sid)
    assert after["branches"]["b"] == before["branches"]["b"] + 4  # user, call, output, answer


@pytest.mark.parametrize("edit", ["branch_rename", "branch_delete", "session_delete"])
async def test_staff_edit_waits_for_the_turn_then_runs(backend, settings, edit):
    settings.FORKVIEW_STAFF_TURN_WAIT = 20
    sid = f"race-wait-{edit}"
    await seed(sid)
    edits = await _edits(sid)
    async with held_turn(sid, "b") as (held, task):
        pending = asyncio.ensure_future(edits[edit]())
        await asyncio.sleep(0.4)
        assert not pending.done(), "the edit ran while the turn was running"
        held.release()
        outcome = await task
        await asyncio.wait_for(pending, 20)
    # The turn landed whole on the branch it was told, then the edit ran.
    assert (outcome.branch_id, outcome.turn, outcome.items_stored) == ("b", 3, 4)
    after = await snapshot(sid)
    if edit == "branch_rename":
        assert "b" not in after["branches"] and after["branches"]["renamed"] == 8
    elif edit == "branch_delete":
        assert "b" not in after["branches"] and after["branches"]["main"] == 4
    else:
        assert after == {"session": False, "messages": 0, "branches": {}, "usage": 0}


async def test_edit_of_another_branch_does_not_wait(backend):
    sid = "race-other-branch"
    await seed(sid)
    row = await ids(sid, "main")
    async with held_turn(sid, "b"):
        started = time.monotonic()
        await staff(services.structure_row_delete, row_id=row["row_id"])  # main, not b
        await staff(services.branch_prefer, session_id=sid, branch_id="b")
        assert time.monotonic() - started < 0.25
    assert (await snapshot(sid))["branches"]["main"] == 3


async def test_a_new_turn_is_busy_while_a_staff_edit_runs(backend):
    sid = "race-busy"
    await seed(sid)
    entered, leave = threading.Event(), threading.Event()

    def hold_session() -> None:
        try:
            with staff_exclusion(sid, None):
                entered.set()
                leave.wait(20)
        finally:
            connections.close_all()

    holder = asyncio.ensure_future(sync_to_async(hold_session, thread_sensitive=False)())
    try:
        assert await asyncio.to_thread(entered.wait, 20)
        for branch in ("main", "b", "never-used"):
            async with turn_guard(sid, branch) as acquired:
                assert not acquired
        async with turn_guard("race-busy-other", "main") as acquired:
            assert acquired
    finally:
        leave.set()
        await holder
    async with turn_guard(sid, "b") as acquired:
        assert acquired


# ---- A writer that bypasses the locks: the turn refuses, stores nothing -------------------------


@sync_to_async
def rename_without_locks(session_id: str, old: str, new: str) -> None:
    """The writer itself (no turn lock): what a lost lease or an unlocked script could do."""
    with transaction.atomic():
        writer = SessionWriter(session_id)
        writer.lock()
        writer.rename_branch(old, new)


async def _bypass(sid: str, how: str) -> None:
    if how == "delete_branch":
        await DjangoSession(session_id=sid).delete_branch("b")
    elif how == "clear_session":
        await DjangoSession(session_id=sid).clear_session()
    else:
        await rename_without_locks(sid, "b", "moved")


@pytest.mark.parametrize("how", ["delete_branch", "clear_session", "rename"])
async def test_turn_refuses_when_its_branch_goes_away_mid_turn(backend, how):
    sid = f"race-gone-{how}"
    await seed(sid)
    async with held_turn(sid, "b") as (held, task):
        await _bypass(sid, how)
        before = await snapshot(sid)
        held.release()
        with pytest.raises(TurnRefused) as refused:
            await task
    message = str(refused.value)
    assert "\n" not in message and "not stored" in message
    assert await snapshot(sid) == before  # nothing stored, nothing recreated
    if how == "clear_session":
        assert before["session"] is False  # the session stays deleted
    else:
        assert "b" not in before["branches"]  # no history-less "b"


@pytest.mark.parametrize("how", ["delete_branch", "clear_session", "rename"])
async def test_turn_refuses_when_its_branch_went_away_since_the_socket_opened(backend, how):
    sid = f"race-before-{how}"
    await seed(sid)
    anchor = await turn_anchor(session_id=sid, branch_id="b")
    await _bypass(sid, how)
    before = await snapshot(sid)
    held = Held()
    held.release()
    with pytest.raises(TurnRefused, match="Reopen|reopen"):
        await run_turn(
            session_id=sid,
            branch_id="b",
            input="hello",
            agent=held.agent,
            notify_viewers=False,
            anchor=anchor,
        )
    assert await snapshot(sid) == before


async def test_anchored_turns_follow_each_other(backend):
    """The outcome's anchor carries the branch on: consecutive turns on a new session."""
    sid = "race-anchor-chain"
    anchor = await turn_anchor(session_id=sid)
    assert not anchor.had_rows
    for turn in (1, 2):
        outcome = await run_turn(
            session_id=sid,
            input=f"hi {turn}",
            agent=Held().agent,
            notify_viewers=False,
            anchor=anchor,
        )
        assert outcome.turn == turn and outcome.anchor is not None
        anchor = outcome.anchor
    assert anchor.had_rows


# ---- Across processes --------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, json, os, sys
    import django
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    django.setup()
    from django.conf import settings
    settings.FORKVIEW_TURN_LOCK = sys.argv[2]
    from agents import Agent, function_tool
    from dashboard.chat.locks import turn_guard
    from dashboard.chat.turns import TurnRefused, run_turn
    from dashboard.demo.model import OfflineModel

    @function_tool
    async def hold_turn() -> str:
        "Hold the turn open until the parent writes a line."
        print("running", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        return "released"

    async def main():
        agent = Agent(name="held", model=OfflineModel(token_delay=0), tools=[hold_turn])
        async with turn_guard(sys.argv[1], "b") as acquired:
            assert acquired
            try:
                outcome = await run_turn(
                    session_id=sys.argv[1], branch_id="b", input="please hold_turn",
                    agent=agent, notify_viewers=False,
                )
            except TurnRefused as exc:
                print(json.dumps({"refused": str(exc)}), flush=True)
                return
        print(json.dumps({"branch": outcome.branch_id, "turn": outcome.turn}), flush=True)

    asyncio.run(main())
    """
)


@contextlib.asynccontextmanager
async def child_turn(sid: str, backend: str) -> AsyncIterator[subprocess.Popen[str]]:
    url = database_url(connection.settings_dict)
    child = subprocess.Popen(  # noqa: ASYNC220 - starting it is instant
        [sys.executable, "-c", CHILD, sid, backend],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": url},
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 60)  # type: ignore[union-attr]
        assert line.strip() == "running"
        yield child
    finally:
        child.kill()
        child.wait()


async def _finish(child: subprocess.Popen[str]) -> dict[str, Any]:
    child.stdin.write("\n")  # type: ignore[union-attr]
    child.stdin.flush()  # type: ignore[union-attr]
    line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 60)  # type: ignore[union-attr]
    await asyncio.wait_for(asyncio.to_thread(child.wait), 30)
    result: dict[str, Any] = json.loads(line)
    return result


async def test_across_processes_staff_waits_and_refuses(backend, settings):
    sid = "race-proc-staff"
    await seed(sid)
    async with child_turn(sid, backend) as child:
        with pytest.raises(services.ServiceError, match=RUNNING):
            await staff(services.branch_delete, session_id=sid, branch_id="b")
        settings.FORKVIEW_STAFF_TURN_WAIT = 30
        pending = asyncio.ensure_future(
            staff(services.branch_rename, session_id=sid, old="b", new="renamed")
        )
        await asyncio.sleep(0.4)
        assert not pending.done()
        result = await _finish(child)
        await asyncio.wait_for(pending, 30)
    assert result == {"branch": "b", "turn": 3}
    after = await snapshot(sid)
    assert "b" not in after["branches"] and after["branches"]["renamed"] == 8


async def test_across_processes_turn_refuses_a_deleted_session(backend):
    sid = "race-proc-gone"
    await seed(sid)
    async with child_turn(sid, backend) as child:
        await DjangoSession(session_id=sid).clear_session()  # bypasses the locks
        result = await _finish(child)
    assert "was deleted or cleared" in result["refused"]
    assert await snapshot(sid) == {"session": False, "messages": 0, "branches": {}, "usage": 0}
