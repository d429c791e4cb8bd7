"""``DjangoSession``: the SDK's ``AdvancedSQLiteSession``, over the Django ORM.

A drop-in for ``agents.extensions.memory.AdvancedSQLiteSession`` (openai-agents 0.24): same
public methods, keyword signatures, return values and exception types, on any database
Forkview runs on (SQLite or PostgreSQL), safe with several processes writing one session.

Usage::

    from agents import Agent, Runner
    from conversations.session import DjangoSession

    session = DjangoSession(session_id="support-42")            # starts on "main"
    result = await Runner.run(agent, "Hello", session=session)
    await session.store_run_usage(result)
    branch = await session.create_branch_from_turn(1, "what-if")  # and switches to it

    # Forkview extras: start on a branch, or use another database alias.
    session = DjangoSession(session_id="support-42", branch_id="what-if", using="archive")

How it works:

- Every operation is one ``sync_to_async`` hop running one ``transaction.atomic()`` block (no
  sync ORM inside ``async def``); on PostgreSQL ``add_items`` and ``pop_item`` are a single
  statement instead (``forkview_append`` / ``forkview_pop``, migration 0007: one round trip).
  Writes first lock the session's ``session_clear_generations`` row (an upsert: a row lock on
  PostgreSQL; on SQLite the IMMEDIATE transaction already holds the file's write lock), so
  sequence numbers, turn numbers and branch ids are computed by one writer at a time, in any
  number of processes.
- As in the SDK, ``add_items``, ``pop_item``, ``delete_branch`` and the turn capture of
  ``store_run_usage`` run in the order they were called on an instance, and a mutation whose
  caller is cancelled still completes (or rolls back) as a whole before the cancellation
  propagates.
- On SQLite, when nothing observes Django's cursor (no DEBUG query log, no test query
  capture, no ``execute_wrapper``), statements run on the connection's DB-API object: the
  same connection, transaction and SQL, with ``django.db`` errors, minus Django's
  per-statement cursor layer. ``sqlite_fast_path = False`` sends them through it always.
  On PostgreSQL, likewise, they run on a server-binding psycopg cursor of the same connection
  and are prepared once per connection (``postgres_fast_path = False`` turns that off).
- The current branch lives in the instance and starts on ``main`` (or ``branch_id=``). A
  ``clear_session`` by any instance, in any process, sends the others back to ``main`` on
  their next operation, exactly as the SDK's clear generations do.

Where the SDK does O(session) work on hot paths (its ``get_items`` join filters the messages
table; each append and pop scans the branch and every orphan message), this class uses the
composite indexes instead, so appends, pops and ``get_items(limit=N)`` cost the same at 500 or
8,000 items. Differences in unobservable bookkeeping, and why, are listed in the README.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from agents import _debug
from agents.logger import (
    log_model_action_error,
    log_model_action_warning,
    log_model_and_tool_action_error,
)
from agents.memory.session import SessionABC
from agents.memory.session_settings import (
    SessionSettings,
    coerce_session_settings,
    resolve_session_limit,
)
from asgiref.sync import sync_to_async
from django.db import DataError, connections, transaction
from django.db.backends.sqlite3.base import FORMAT_QMARK_REGEX

from . import classify, items
from .fields import RawJSON
from .models import (
    MAIN_BRANCH,
    MessageStructure,
)
from .sql import SessionSQL
from .text import column_problem
from .writes import SessionWriter, UsageRow

if TYPE_CHECKING:
    from agents import RunConfig
    from agents.items import TResponseInputItem
    from agents.result import RunResult, RunResultStreaming
    from agents.usage import Usage

__all__ = ["BranchAnchor", "BranchGone", "DjangoSession"]

_T = TypeVar("_T")
logger = logging.getLogger(__name__)

CLOSED_MESSAGE = "DjangoSession is closed"

BRANCH_GONE_BEFORE = (
    "Branch '{branch}' no longer exists in session '{session}' (it was renamed or deleted). "
    "Reopen the conversation to continue it."
)
BRANCH_GONE_DURING = (
    "Branch '{branch}' of session '{session}' was renamed or deleted while this turn ran; "
    "the turn was not stored. Reopen the conversation to continue it."
)
SESSION_CLEARED_BEFORE = (
    "Session '{session}' was deleted or cleared since this conversation was opened; "
    "reopen it to start again."
)
SESSION_CLEARED_DURING = (
    "Session '{session}' was deleted or cleared while this turn ran; the turn was not stored."
)


class BranchGone(Exception):
    """The branch (or session) a turn started on went away; nothing was written."""


@dataclass(frozen=True, slots=True)
class BranchAnchor:
    """Where a turn started: the branch, the session's clear generation, whether it had rows.

    ``DjangoSession.add_items_at`` writes only if the same branch is still there.
    """

    branch_id: str
    generation: int
    had_rows: bool


async def _await_mutation(awaitable: Awaitable[_T]) -> _T:
    """Wait for a mutation to settle even if the caller is cancelled, then re-raise that.

    The database work runs in a worker thread that cancellation cannot stop, so returning
    early would let the caller believe a write that is still landing had not happened.
    """
    task = asyncio.ensure_future(awaitable)
    cancellation: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError as exc:
            cancellation = cancellation or exc
    try:
        result = task.result()
    except BaseException:
        if cancellation is not None:
            raise cancellation from None
        raise
    if cancellation is not None:
        raise cancellation from None
    return result


def _decode_rows(rows: list[tuple[Any, ...]]) -> list[Any]:
    """Decode the first column of raw rows, skipping what does not decode (as the SDK)."""
    decoded = []
    for row in rows:
        try:
            decoded.append(items.decode(row[0]))
        except items.DecodeError:
            continue
    return decoded


@functools.lru_cache(maxsize=256)
def _qmark(sql: str) -> str:
    """A ``%s`` statement in sqlite3's ``?`` style (the conversion Django's cursor makes)."""
    return FORMAT_QMARK_REGEX.sub("?", sql).replace("%%", "%")


def _db_operation(worker: Callable[..., _T]) -> Callable[..., _T]:
    """Run a sync worker with one cursor for all its statements (and refuse if closed).

    On SQLite, when nothing observes the connection (no ``DEBUG`` query log, no
    ``CaptureQueriesContext``/``assertNumQueries``, no ``connection.execute_wrapper``), the
    worker's statements go straight to the connection's DB-API object: same connection, same
    transaction, same SQL, with errors still translated to ``django.db`` exceptions, minus
    Django's per-statement cursor machinery (~20 µs warm, ~100 µs with cold CPU caches, which
    is a fifth of ``get_items(limit=20)``). Anything observing gets every statement through
    Django's cursor as usual. ``DjangoSession.sqlite_fast_path = False`` turns this off
    (e.g. for an APM that patches Django's ``CursorWrapper``).
    """

    @functools.wraps(worker)
    def run(self: DjangoSession, *args: Any) -> _T:
        self._check_not_closed()
        connection = connections[self.using]
        if connection.errors_occurred and not connection.in_atomic_block:
            # Outside a request nothing else recycles a connection the server dropped
            # (a long-lived consumer, a worker process): drop it here if it is unusable.
            if connection.is_usable():
                connection.errors_occurred = False
            else:
                connection.close()
        observed = connection.queries_logged or connection.execute_wrappers
        vendor = connection.vendor
        if not observed and self.sqlite_fast_path and vendor == "sqlite":
            if connection.connection is None:
                connection.ensure_connection()
            self._local.dbapi = connection.connection
            try:
                with connection.wrap_database_errors:
                    return worker(self, *args)
            finally:
                self._local.dbapi = None
        if not observed and self.postgres_fast_path and vendor == "postgresql":
            if connection.connection is None:
                connection.ensure_connection()
            raw = connection.connection
            if raw.prepare_threshold is None:
                # Django turns psycopg's prepared statements off (None); a threshold no query
                # reaches keeps automatic preparing off and lets prepare=True prepare ours.
                # Django's own ClientCursor never prepares whatever the threshold.
                raw.prepare_threshold = _EXPLICIT_PREPARE_ONLY
            # A server-binding psycopg cursor on Django's own connection (same transaction,
            # same loaders): statements are prepared on their first use on each connection.
            self._local.pg = _PgCursor(raw)
            try:
                with connection.wrap_database_errors:
                    return worker(self, *args)
            finally:
                self._local.pg.close()
                self._local.pg = None
        with connection.cursor() as cursor:
            self._local.cursor = cursor
            try:
                return worker(self, *args)
            finally:
                self._local.cursor = None

    # One SyncToAsync per worker, built once: building it on every call (update_wrapper, the
    # coroutine-function checks) costs ~3 µs warm and ~60 µs with cold CPU caches.
    run.hop = sync_to_async(run)  # type: ignore[attr-defined]
    return run


def _pg_cursor_class() -> Any:
    import psycopg

    class PgCursor(psycopg.Cursor[Any]):
        """psycopg's server-binding cursor (Django's default, ``ClientCursor``, binds on the
        client and so can neither prepare statements nor skip re-planning them)."""

        __slots__ = ()

    return PgCursor


def _PgCursor(connection: Any) -> Any:  # noqa: N802  (a class, built on first use)
    global _pg_cursor_type
    if _pg_cursor_type is None:
        _pg_cursor_type = _pg_cursor_class()
    return _pg_cursor_type(connection)


_pg_cursor_type: Any = None
_EXPLICIT_PREPARE_ONLY = sys.maxsize


JSONB_ERROR = (
    "PostgreSQL's jsonb cannot store this item ({detail}). It holds strict JSON: "
    "no NUL characters (\\u0000), lone surrogates or NaN/Infinity. Nothing was written."
)
TEXT_ERROR = (
    "PostgreSQL cannot store this {what} ({detail}): text columns hold no NUL characters "
    "(\\u0000) and no lone surrogates. Nothing was written."
)
_NON_JSON_CONSTANT = re.compile(r"(?:NaN|-?Infinity)")
# A NUL escape in ``json.dumps`` output: "\u0000" after an even number of backslashes (an
# odd one would make it the text "\\u0000"; json.dumps writes a NUL only as this escape).
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _jsonb_error(exc: DataError, using: str) -> Exception:
    """What PostgreSQL refused, as the clear ``ValueError`` (other vendors: as raised)."""
    if connections[using].vendor != "postgresql":
        return exc
    return ValueError(JSONB_ERROR.format(detail=str(exc).splitlines()[0]))


def _payload_problem(payload: str) -> str | None:
    """Why jsonb cannot hold a ``json.dumps`` text (``None`` if it can). Substring checks
    first: the common item costs three ``in`` scans of its text."""
    if "\\u0000" in payload and _NUL_ESCAPE.search(payload):
        # an escaped backslash before "u0000" is text, not a NUL: the pattern checks exactly
        return "a NUL character (\\u0000)"
    if ("\\ud" in payload or "\\uD" in payload) and _has_lone_surrogate(payload):
        return "a lone surrogate"
    if ("NaN" in payload or "Infinity" in payload) and _NON_JSON_CONSTANT.search(payload):
        try:
            json.loads(payload, parse_constant=_refuse_constant)
        except ValueError:
            return "NaN or Infinity"
    return None


def _has_lone_surrogate(payload: str) -> bool:
    decoded = json.loads(payload)
    try:
        json.dumps(decoded, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


def _check_storable(
    session_id: str,
    branch_id: str,
    payloads: Sequence[RawJSON],
    labels: Sequence[classify.ItemLabel],
) -> None:
    """PostgreSQL: refuse, before any database work, what its columns cannot hold.

    Raises:
        ValueError: NUL or a lone surrogate in the session or branch id; an item jsonb cannot
            store. The whole batch is refused (nothing is written).
    """
    for what, text in (("session id", session_id), ("branch id", branch_id)):
        problem = column_problem(text)
        if problem:
            raise ValueError(TEXT_ERROR.format(what=what, detail=f"it holds {problem}"))
    for index, payload in enumerate(payloads):
        problem = _payload_problem(payload)
        if problem:
            raise ValueError(JSONB_ERROR.format(detail=f"item {index} holds {problem}"))
    for label in labels:
        for name in (label.message_type, label.tool_name):
            label_problem = column_problem(name) if name else None
            if label_problem:
                raise ValueError(
                    TEXT_ERROR.format(what="item type or tool name", detail=label_problem)
                )


class DjangoSession(SessionABC):
    """An SDK session stored through the Django ORM, with branches and usage analytics."""

    session_settings: SessionSettings | None = None
    #: SQLite: run statements on the DB-API connection when nothing observes Django's
    #: cursor (see ``_db_operation``); False sends every statement through Django's cursor.
    sqlite_fast_path: bool = True
    #: PostgreSQL: run statements on a server-binding psycopg cursor of Django's connection,
    #: prepared on first use, when nothing observes Django's cursor (see ``_db_operation``).
    #: False: every statement through Django's cursor (e.g. behind a PgBouncer in
    #: transaction mode older than 1.21, which cannot keep prepared statements).
    postgres_fast_path: bool = True

    def __init__(
        self,
        *,
        session_id: str,
        branch_id: str | None = None,
        using: str = "default",
        logger: logging.Logger | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
    ) -> None:
        """Open (lazily: no query runs here) a session.

        Args:
            session_id: The conversation's id; any string.
            branch_id: The branch to start on. Defaults to ``"main"``, like the SDK.
                It is not validated here: an unknown branch behaves like the SDK's ghost
                branch (reads are empty; the next ``add_items`` creates it).
            using: The Django database alias to read and write.
            logger: Where to log. Defaults to this module's logger.
            session_settings: Default ``limit`` for ``get_items``; a dict is coerced.
        """
        if using not in connections:
            raise ValueError(f"Unknown database alias {using!r}")
        self.session_id = session_id
        self.session_settings = (
            coerce_session_settings(session_settings)
            if session_settings is not None
            else SessionSettings()
        )
        self.using = using
        self._logger = logger if logger is not None else logging.getLogger(__name__)
        self._closed = False
        # (current branch, clear generation last seen). The generation is read on the first
        # operation (None until then), since a constructor may run inside an event loop.
        self._branch_state: tuple[str, int | None] = (branch_id or MAIN_BRANCH, None)
        self._turn_operation_tail: Future[None] | None = None
        self._local = threading.local()

    def __repr__(self) -> str:
        return (
            f"DjangoSession(session_id={self.session_id!r}, "
            f"branch_id={self._current_branch_id!r}, using={self.using!r})"
        )

    @property
    def current_branch_id(self) -> str:
        """The branch this instance reads and writes by default."""
        return self._branch_state[0]

    _current_branch_id = current_branch_id

    def close(self) -> None:
        """Mark the session closed: every later operation raises ``RuntimeError``."""
        self._closed = True

    # ---- Session protocol implementation -------------------------------------------------

    async def get_items(
        self, limit: int | None = None, branch_id: str | None = None
    ) -> list[TResponseInputItem]:
        """Return the branch's items, oldest first.

        Args:
            limit: The newest N items (still oldest first). ``None`` uses
                ``session_settings.limit``; 0 returns ``[]``; a negative limit returns all.
            branch_id: The branch to read; the current branch if ``None``. Unknown -> ``[]``.

        Returns:
            The decoded items; rows whose JSON does not decode are skipped.
        """
        session_limit = resolve_session_limit(limit, self.session_settings)
        return await self._hop(self._get_items_sync, session_limit, branch_id)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append items to the current branch, in one transaction.

        Args:
            items: Responses-API input items. A user message opens a new turn.

        Raises:
            TypeError: An item is not JSON-serialisable (nothing is written).
            RuntimeError: The session is closed.
        """
        self._check_not_closed()
        if not items:
            return
        len(items)  # an unsized iterable fails here, before anything is written (as in the SDK)
        # Serialise before any database work: a bad item fails the call and writes nothing.
        payloads = [RawJSON(json.dumps(item)) for item in items]
        labels = [classify.label(item) for item in items]
        branch_id, generation = self._branch_state
        try:
            if self._strict_text:
                _check_storable(self.session_id, branch_id, payloads, labels)
            await _await_mutation(
                self._run_ordered(self._add_items_sync, payloads, labels, branch_id, generation)
            )
        except Exception as exc:
            log_model_and_tool_action_error(self._logger, "Failed to add session items", exc)
            raise

    async def branch_anchor(self, expected: BranchAnchor | None = None) -> BranchAnchor:
        """The current branch's anchor (Forkview extra, for the live chat): the clear
        generation and whether the branch has rows, for ``add_items_at``.

        Args:
            expected: An anchor taken earlier (e.g. when a chat socket opened); it is
                checked against the current state and returned.

        Raises:
            BranchGone: ``expected`` no longer holds: the session was cleared or deleted, or
                the branch (which had rows) renamed or deleted since.
        """
        current = await self._hop(self._branch_anchor_sync)
        if expected is None:
            return current
        if current.generation != expected.generation:
            raise BranchGone(SESSION_CLEARED_BEFORE.format(session=self.session_id))
        if expected.had_rows and not current.had_rows:
            raise BranchGone(
                BRANCH_GONE_BEFORE.format(branch=expected.branch_id, session=self.session_id)
            )
        return expected

    async def add_items_at(self, items: list[TResponseInputItem], anchor: BranchAnchor) -> None:
        """``add_items`` on ``anchor``'s branch, only if it is still the branch it was.

        Under the writer lock: no clear since the anchor (same generation), and a branch that
        had rows still has some (not renamed or deleted). Otherwise nothing is written.

        Raises:
            BranchGone: The session was cleared or deleted, or the branch renamed or deleted.
            TypeError, ValueError: As ``add_items``.
        """
        self._check_not_closed()
        if not items:
            return
        payloads = [RawJSON(json.dumps(item)) for item in items]
        labels = [classify.label(item) for item in items]
        try:
            if self._strict_text:
                _check_storable(self.session_id, anchor.branch_id, payloads, labels)
            await _await_mutation(
                self._run_ordered(self._add_items_at_sync, payloads, labels, anchor)
            )
        except BranchGone:
            raise
        except Exception as exc:
            log_model_and_tool_action_error(self._logger, "Failed to add session items", exc)
            raise

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item of the current branch (``None`` if empty).

        The message row is deleted only when no other branch shares it; a turn left empty
        on this branch loses its usage row.
        """
        branch_id, generation = self._branch_state
        return await _await_mutation(self._run_ordered(self._pop_item_sync, branch_id, generation))

    async def clear_session(self) -> None:
        """Delete every item, branch and usage row of the session; back to ``main``.

        Branch ids used so far stay reserved, and other instances of this session (in any
        process) return to ``main`` on their next operation.
        """
        await _await_mutation(self._hop(self._clear_session_sync))

    # ---- Usage ----------------------------------------------------------------------------

    async def store_run_usage(self, result: RunResult | RunResultStreaming) -> None:
        """Store a run's token usage on the current turn of the current branch.

        Replaces any usage stored for that turn (no summing). Never raises for ordinary
        errors: they are logged, as in the SDK.

        Args:
            result: The ``RunResult`` of ``Runner.run`` or the streamed result of
                ``Runner.run_streamed`` (once its stream is consumed).
        """
        try:
            usage = result.context_wrapper.usage
        except Exception as exc:
            self._log_usage_error(exc)
            return
        await self.store_usage(usage)

    async def store_usage(self, usage: Usage | None) -> None:
        """Store ``usage`` on the current turn of the current branch (Forkview extra).

        What ``store_run_usage`` does with ``result.context_wrapper.usage``, for callers that
        hold a ``Usage`` (a model's own response, an import, a test). ``None`` stores nothing.
        Never raises for ordinary errors: they are logged, as in the SDK.
        """
        try:
            if usage is None:
                return
            branch_id, generation = self._branch_state
            # Capture and write in one worker hop, in this instance's mutation order.
            await _await_mutation(
                self._run_ordered(self._capture_and_store_usage_sync, usage, branch_id, generation)
            )
        except Exception as exc:
            self._log_usage_error(exc)

    # ---- Tracing (issue 16) -----------------------------------------------------------------

    async def trace_metadata(self) -> dict[str, str]:
        """Trace metadata linking a run to this session (Forkview extra, issue 16).

        ``{"forkview_session": session id, "forkview_branch": the current branch,
        "forkview_turn": the turn the next run adds}``: the current branch's newest user turn
        plus one (1 on an empty branch), read now. Values are strings, as trace backends
        expect. ``conversations.tracing.ForkviewTracingProcessor`` stores them on the trace.
        Assumes the run starts with user input (a new turn), as a chat turn does.
        """
        branch_id = self._branch_state[0]
        turn = await self._hop(self._next_turn_sync, branch_id)
        return {
            "forkview_session": self.session_id,
            "forkview_branch": branch_id,
            "forkview_turn": str(turn),
        }

    async def run_config(self, **overrides: Any) -> RunConfig:
        """A ``RunConfig`` whose trace is linked to this session, branch and turn.

        ``group_id`` is the session id (traces group per conversation, as LangSmith threads)
        and ``trace_metadata`` is :meth:`trace_metadata`. ``overrides`` are any other
        ``RunConfig`` fields (``workflow_name``, ``model``, ...); a ``trace_metadata`` given
        there is merged over ours. Usage::

            config = await session.run_config(workflow_name="Support bot")
            result = await Runner.run(agent, text, session=session, run_config=config)
        """
        from agents import RunConfig

        metadata: dict[str, Any] = dict(await self.trace_metadata())
        metadata.update(overrides.pop("trace_metadata", None) or {})
        overrides.setdefault("group_id", self.session_id)
        return RunConfig(trace_metadata=metadata, **overrides)

    def _log_usage_error(self, exc: Exception) -> None:
        """The SDK's log line for a failed usage store (redacted by its data policy)."""
        session_id = self.session_id
        log_model_action_error(
            self._logger,
            "Failed to store session usage",
            exc,
            diagnostic_extra=lambda: {"session_id": session_id},
        )

    async def get_session_usage(self, branch_id: str | None = None) -> dict[str, int] | None:
        """Usage summed over one branch, or over all branches when ``branch_id`` is falsy.

        Returns:
            ``requests``, ``input_tokens``, ``output_tokens``, ``total_tokens`` and
            ``total_turns`` (usage rows counted), or ``None`` if there is no usage.
        """
        return await self._hop(self._get_session_usage_sync, branch_id)

    async def get_turn_usage(
        self, user_turn_number: int | None = None, branch_id: str | None = None
    ) -> list[dict[str, Any]] | dict[str, Any]:
        """Usage of one turn (a dict, ``{}`` if none) or of every turn (a list) of a branch.

        Args:
            user_turn_number: The turn; ``None`` lists all turns with ``user_turn_number``.
            branch_id: The branch; the current branch if ``None``.
        """
        return await self._hop(self._get_turn_usage_sync, user_turn_number, branch_id)

    # ---- Branching ------------------------------------------------------------------------

    async def create_branch_from_turn(
        self, turn_number: int, branch_name: str | None = None
    ) -> str:
        """Copy the current branch's turns before ``turn_number`` to a new branch; switch to it.

        Args:
            turn_number: The branch turn of the user message to branch from (excluded).
            branch_name: The new branch's id; generated if ``None``. Ids are reserved forever.

        Returns:
            The new branch's id.

        Raises:
            ValueError: Blank name, a name already used in this session, or no user message
                at that turn on the current branch.
        """
        if branch_name is not None and not branch_name.strip():
            raise ValueError("Branch name cannot be empty")
        if self._strict_text and isinstance(branch_name, str):
            _check_storable(self.session_id, branch_name, [], [])
        new_branch, source, content = await _await_mutation(
            self._hop(self._create_branch_sync, turn_number, branch_name)
        )
        if _debug.DONT_LOG_MODEL_DATA:  # the turn's text is model data (as in the SDK)
            self._logger.debug(
                "Created branch %r from turn %s of %r", new_branch, turn_number, source
            )
        else:
            self._logger.debug(
                "Created branch %r from turn %s (%r) of %r",
                new_branch,
                turn_number,
                content,
                source,
            )
        return new_branch

    async def create_branch_from_content(
        self, search_term: str, branch_name: str | None = None
    ) -> str:
        """Branch from the first user turn of the current branch that contains ``search_term``.

        Raises:
            ValueError: No user turn matches (checked first), or as ``create_branch_from_turn``.
        """
        matching_turns = await self.find_turns_by_content(search_term)
        if not matching_turns:
            raise ValueError(f"No user turns found containing '{search_term}'")
        return await self.create_branch_from_turn(matching_turns[0]["turn"], branch_name)

    async def switch_to_branch(self, branch_id: str) -> None:
        """Make ``branch_id`` current.

        Raises:
            ValueError: The branch has no rows in this session.
        """
        old_branch = self._current_branch_id
        await _await_mutation(self._hop(self._switch_branch_sync, branch_id))
        self._logger.info("Switched from branch %r to %r", old_branch, branch_id)

    async def delete_branch(self, branch_id: str, force: bool = False) -> None:
        """Delete a branch's rows and usage; its id stays reserved.

        Args:
            branch_id: The branch to delete (never ``"main"``).
            force: Allow deleting the current branch (switches to ``"main"`` first).

        Raises:
            ValueError: Blank id, ``"main"``, the current branch without ``force``, or a
                branch with no rows.
        """
        if not branch_id or not branch_id.strip():
            raise ValueError("Branch ID cannot be empty")
        if branch_id == MAIN_BRANCH:
            raise ValueError("Cannot delete the 'main' branch")
        if branch_id == self._current_branch_id:
            if not force:
                raise ValueError(
                    f"Cannot delete current branch '{branch_id}'. "
                    "Use force=True or switch branches first"
                )
            if not any(b["branch_id"] == branch_id for b in await self.list_branches()):
                raise ValueError(f"Branch '{branch_id}' does not exist")
            await self.switch_to_branch(MAIN_BRANCH)
        structure_deleted, usage_deleted, messages_deleted = await _await_mutation(
            self._run_ordered(self._delete_branch_sync, branch_id)
        )
        self._logger.info(
            "Deleted branch %r: %s message entries, %s usage entries, %s orphaned messages",
            branch_id,
            structure_deleted,
            usage_deleted,
            messages_deleted,
        )

    async def list_branches(self) -> list[dict[str, Any]]:
        """Every branch with rows: ``branch_id``, ``message_count``, ``user_turns``,
        ``is_current`` and ``created_at`` (its first row's), oldest first."""
        return await self._hop(self._list_branches_sync)

    # ---- Browsing -------------------------------------------------------------------------

    async def get_conversation_turns(self, branch_id: str | None = None) -> list[dict[str, Any]]:
        """One dict per user turn: ``turn``, ``content`` (100-character preview),
        ``full_content``, ``timestamp`` and ``can_branch``."""
        return await self._hop(self._user_turns_sync, branch_id, None, 100)

    async def find_turns_by_content(
        self, search_term: str, branch_id: str | None = None
    ) -> list[dict[str, Any]]:
        """User turns whose text contains ``search_term`` (ASCII case-insensitive), shaped
        like ``get_conversation_turns`` but with an untruncated ``content``."""
        return await self._hop(self._user_turns_sync, branch_id, (search_term,), None)

    async def get_conversation_by_turns(
        self, branch_id: str | None = None
    ) -> dict[int, list[dict[str, str | None]]]:
        """Turn number -> ``[{"type": ..., "tool_name": ...}, ...]`` in sequence order."""
        return await self._hop(self._conversation_by_turns_sync, branch_id)

    async def get_tool_usage(self, branch_id: str | None = None) -> list[tuple[str, int, int]]:
        """``(tool_name, calls, turn)`` per tool and turn, ordered by turn."""
        return await self._hop(self._tool_usage_sync, branch_id)

    # ---- Ordering and branch-state bookkeeping -------------------------------------------

    def _run_ordered(self, worker: Callable[..., _T], *args: Any) -> Coroutine[Any, Any, _T]:
        """Queue ``worker`` behind this instance's earlier history mutations.

        The slot is taken now, before the caller's first ``await``, so calls land in the
        order they were made (as the SDK's ``_run_ordered_turn_operation``).
        """
        completion: Future[None] = Future()
        predecessor, self._turn_operation_tail = self._turn_operation_tail, completion

        async def _run() -> _T:
            try:
                if predecessor is not None:
                    await asyncio.wrap_future(predecessor)
                return await self._hop(worker, *args)
            finally:
                completion.set_result(None)
                if self._turn_operation_tail is completion:
                    self._turn_operation_tail = None

        return _run()

    def _hop(self, worker: Callable[..., _T], *args: Any) -> Awaitable[_T]:
        """Run a bound ``@_db_operation`` worker on the ORM's thread (``sync_to_async``)."""
        hop: Callable[..., Awaitable[_T]] = worker.hop  # type: ignore[attr-defined]  # set by _db_operation
        return hop(self, *args)

    @functools.cached_property
    def _writer(self) -> SessionWriter:
        """This session's write primitives, running on this instance's statement path."""
        return SessionWriter(
            self.session_id,
            using=self.using,
            execute=self._execute,
            executemany=self._executemany,
        )

    @functools.cached_property
    def _strict_text(self) -> bool:
        """PostgreSQL: check ids and items before writing (see ``_check_storable``)."""
        return bool(connections[self.using].vendor == "postgresql")

    @functools.cached_property
    def _sql(self) -> SessionSQL:
        """The statements for this session's database (looked up once per instance)."""
        return self._writer.sql

    def _cursor(self) -> Any:
        """The cursor of the operation running on this thread (see :func:`_db_operation`)."""
        cursor = getattr(self._local, "cursor", None)
        return cursor if cursor is not None else connections[self.using].cursor()

    def _execute(self, sql: str, params: Sequence[Any]) -> Any:
        """Run one statement on this session's database; return the rows or the rowcount."""
        local = self._local
        dbapi = getattr(local, "dbapi", None)
        if dbapi is not None:
            cursor = dbapi.execute(_qmark(sql), params)
        else:
            cursor = getattr(local, "pg", None)
            if cursor is not None:
                cursor.execute(sql, params, prepare=True)
            else:
                cursor = self._cursor()
                cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else cursor.rowcount

    def _executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        local = self._local
        dbapi = getattr(local, "dbapi", None)
        if dbapi is not None:
            dbapi.executemany(_qmark(sql), rows)
        elif getattr(local, "pg", None) is not None:
            local.pg.executemany(sql, rows)
        else:
            self._cursor().executemany(sql, rows)

    def _check_not_closed(self) -> None:
        if self._closed:
            raise RuntimeError(CLOSED_MESSAGE)

    def _observe_generation(self, durable: int) -> None:
        """Adopt the durable clear generation; a newer one than we saw means "back to main"."""
        branch, seen = self._branch_state
        if seen is None:
            self._branch_state = (branch, durable)
        elif seen != durable:
            self._branch_state = (MAIN_BRANCH, durable)

    def _durable_generation(self) -> int:
        rows = self._execute(self._sql.read_generation, [self.session_id])
        return rows[0][0] if rows else 0

    def _resolve_read_branch(self, branch_id: str | None) -> str:
        """An explicit branch as given; the implicit one after noticing external clears."""
        self._check_not_closed()
        if branch_id is not None:
            return branch_id
        self._observe_generation(self._durable_generation())
        return self._current_branch_id

    def _write_target(self, branch_id: str, generation: int | None) -> str:
        """Lock the session and return the branch a queued mutation must act on.

        A mutation keeps the branch it was called on (a later switch does not redirect it),
        unless a clear committed since: then it follows the reset to ``main``.
        """
        self._observe_generation(self._writer.lock())
        if generation is not None and self._branch_state[1] != generation:
            return self._current_branch_id
        return branch_id

    def _structure(self) -> Any:
        return MessageStructure.objects.using(self.using).filter(session_id=self.session_id)

    # ---- Sync workers (each runs in one sync_to_async hop) --------------------------------

    @_db_operation
    def _get_items_sync(self, limit: int | None, branch_id: str | None) -> list[Any]:
        if limit == 0:
            self._resolve_read_branch(branch_id)
            return []
        if branch_id is not None:
            return self._branch_items(branch_id, limit)[0]
        # The current branch: its rows carry the clear generation. One statement in the
        # common case; if a clear from another instance sent us back to main, read main.
        branch = self._current_branch_id
        items, generation = self._branch_items(branch, limit)
        self._observe_generation(self._durable_generation() if generation is None else generation)
        if self._current_branch_id != branch:
            items = self._branch_items(self._current_branch_id, limit)[0]
        return items

    def _branch_items(self, branch: str, limit: int | None) -> tuple[list[Any], int | None]:
        """A branch's items (the newest ``limit`` if not None/negative) and the session's
        clear generation read with them (``None`` when the branch has no rows)."""
        sid = self.session_id
        if limit is None or limit < 0:
            rows = self._execute(self._sql.items_all, [sid, sid, branch])
            return _decode_rows(rows), (rows[0][1] if rows else None)
        window = limit
        while True:
            rows = self._execute(self._sql.items_newest, [sid, sid, branch, branch, window])
            generation = rows[0][1] if rows else None
            items = _decode_rows(rows[::-1])
            if len(items) >= limit:
                return items[-limit:], generation
            if len(rows) < window:
                return items, generation
            window *= 2

    @_db_operation
    def _add_items_sync(
        self,
        payloads: list[RawJSON],
        labels: list[classify.ItemLabel],
        branch_id: str,
        generation: int | None,
    ) -> None:
        self._check_not_closed()
        try:
            if self._sql.append_function:
                current, seen = self._branch_state
                with self._one_statement():
                    durable = self._writer.append_locked(
                        branch_id, payloads, labels, expect=generation, seen=seen, current=current
                    )
                self._observe_generation(durable)
                return
            with transaction.atomic(using=self.using):
                target = self._write_target(branch_id, generation)
                self._writer.append(target, payloads, labels)
        except DataError as exc:
            raise _jsonb_error(exc, self.using) from exc

    def _one_statement(self) -> Any:
        """Around a write that is one statement: nothing in autocommit mode (the statement is
        its own transaction: no BEGIN and COMMIT round trips); inside a caller's transaction, a
        savepoint, so that a failure leaves that transaction usable as ``atomic()`` would."""
        if connections[self.using].in_atomic_block:
            return transaction.atomic(using=self.using)
        return contextlib.nullcontext()

    @_db_operation
    def _branch_anchor_sync(self) -> BranchAnchor:
        self._check_not_closed()
        generation = self._durable_generation()
        self._observe_generation(generation)
        branch = self._current_branch_id
        had_rows = self._structure().filter(branch_id=branch).exists()
        return BranchAnchor(branch_id=branch, generation=generation, had_rows=had_rows)

    @_db_operation
    def _add_items_at_sync(
        self, payloads: list[RawJSON], labels: list[classify.ItemLabel], anchor: BranchAnchor
    ) -> None:
        self._check_not_closed()
        branch, sid = anchor.branch_id, self.session_id
        try:
            with transaction.atomic(using=self.using):
                if self._writer.lock() != anchor.generation:
                    raise BranchGone(SESSION_CLEARED_DURING.format(session=sid))
                if anchor.had_rows and not self._structure().filter(branch_id=branch).exists():
                    raise BranchGone(BRANCH_GONE_DURING.format(branch=branch, session=sid))
                self._writer.append(branch, payloads, labels)
        except DataError as exc:
            raise _jsonb_error(exc, self.using) from exc

    @_db_operation
    def _pop_item_sync(self, branch_id: str, generation: int | None) -> Any:
        self._check_not_closed()
        if self._sql.pop_function:
            current, seen = self._branch_state
            with self._one_statement():
                durable, item = self._writer.pop_locked(
                    branch_id, expect=generation, seen=seen, current=current
                )
            self._observe_generation(durable)
            return item
        with transaction.atomic(using=self.using):
            return self._writer.pop(self._write_target(branch_id, generation))

    @_db_operation
    def _clear_session_sync(self) -> None:
        self._check_not_closed()
        with transaction.atomic(using=self.using):
            generation = self._writer.clear()
        self._branch_state = (MAIN_BRANCH, generation)

    @_db_operation
    def _capture_and_store_usage_sync(
        self, usage: Usage, branch_id: str, generation: int | None
    ) -> None:
        """Store ``usage`` on the branch's current turn, in one transaction.

        The turn is read under the session's writer lock, so nothing can pop, delete or clear
        it before the row is written. SQLite (IMMEDIATE): BEGIN takes that lock, then one
        read and one write; PostgreSQL: the lock upsert, one read, and the write.
        """
        self._check_not_closed()
        with transaction.atomic(using=self.using):
            durable, turn, present = self._writer.lock_with_current_turn(branch_id)
            self._observe_generation(durable)
            if generation is not None and self._branch_state[1] != generation:
                return  # a clear invalidated the history this usage belongs to
            if not present:
                self._logger.debug("No current turn on branch %r: usage not stored", branch_id)
                return
            row = UsageRow(
                requests=usage.requests or 0,
                input_tokens=usage.input_tokens or 0,
                output_tokens=usage.output_tokens or 0,
                total_tokens=usage.total_tokens or 0,
                input_tokens_details=self._details_json(usage, "input_tokens_details"),
                output_tokens_details=self._details_json(usage, "output_tokens_details"),
            )
            self._writer.replace_turn_usage(branch_id, turn or 0, row)

    def _details_json(self, usage: Usage, attribute: str) -> RawJSON | None:
        details = getattr(usage, attribute, None)
        if not details:
            return None
        try:
            return RawJSON(json.dumps(details.__dict__))
        except (TypeError, ValueError, AttributeError) as exc:
            log_model_action_warning(self._logger, f"Failed to serialize {attribute}", exc)
            return None

    @_db_operation
    def _create_branch_sync(
        self, turn_number: int, branch_name: str | None
    ) -> tuple[str, str, Any]:
        self._check_not_closed()
        with transaction.atomic(using=self.using):
            self._observe_generation(self._writer.lock())
            source, generation = self._branch_state
            sid = self.session_id
            # The turn is compared in SQL as given (an ORM IntegerField filter would round
            # 2.5 down to 2; the SDK finds no turn 2.5).
            # SQLite compares True as 1; PostgreSQL refuses integer = boolean.
            turn_param = int(turn_number) if isinstance(turn_number, bool) else turn_number
            found = self._execute(self._sql.user_message_at_turn, [sid, source, turn_param])
            if not found:
                raise ValueError(
                    f"Turn {turn_number} does not contain a user message in branch '{source}'"
                )
            try:
                content = items.decode(found[0][0]).get("content", "")
            except Exception:  # only for the debug log, as in the SDK
                content = "Unable to parse content"
            # Backfill ids of branches written without a reservation, then reserve ours.
            self._writer.reserve_known_branches()
            new_branch = self._writer.reserve_new_branch(branch_name, turn_number, int(time.time()))
            self._writer.copy_prefix(source, new_branch, turn_param, found[0][1])
        self._branch_state = (new_branch, generation)
        return new_branch, source, content

    @_db_operation
    def _switch_branch_sync(self, branch_id: str) -> None:
        self._check_not_closed()
        if not self._structure().filter(branch_id=branch_id).exists():
            raise ValueError(f"Branch '{branch_id}' does not exist")
        self._branch_state = (branch_id, self._durable_generation())

    @_db_operation
    def _delete_branch_sync(self, branch_id: str) -> tuple[int, int, int]:
        self._check_not_closed()
        with transaction.atomic(using=self.using):
            self._observe_generation(self._writer.lock())
            return self._writer.delete_branch(branch_id)

    @_db_operation
    def _list_branches_sync(self) -> list[dict[str, Any]]:
        rows = self._execute(self._sql.branch_summaries, [self.session_id, self.session_id])
        # Each row carries the clear generation (NULL: never written); no rows, no generation.
        self._observe_generation((rows[0][4] or 0) if rows else self._durable_generation())
        current = self._current_branch_id
        return [
            {
                "branch_id": branch,
                "message_count": message_count,
                "user_turns": user_turns,
                "is_current": branch == current,
                "created_at": items.sdk_timestamp(created_at),
            }
            for branch, message_count, user_turns, created_at, _generation in rows
        ]

    @_db_operation
    def _user_turns_sync(
        self, branch_id: str | None, search: tuple[str] | None, preview_length: int | None
    ) -> list[dict[str, Any]]:
        """User turns of a branch; with ``search=(term,)``, only those matching ``term``."""
        branch = self._resolve_read_branch(branch_id)
        rows = self._execute(self._sql.user_turns, [self.session_id, branch])
        matcher = _TurnMatcher(search[0], self.using) if search is not None else None
        turns = []
        for turn, data, created_at in rows:
            if matcher is not None and not matcher.prefilter(data):
                continue
            # The SDK skips rows that do not decode or are not objects, and lets odd content
            # (``None``, numbers, non-text parts) raise TypeError while searching: so do we.
            try:
                content = items.decode(data).get("content", "")
                if matcher is not None and not matcher.matches(content):
                    continue
            except (json.JSONDecodeError, AttributeError):
                continue
            turns.append(
                {
                    "turn": turn,
                    "content": classify.content_preview(content, preview_length),
                    "full_content": content,
                    "timestamp": items.sdk_timestamp(created_at),
                    "can_branch": True,
                }
            )
        return turns

    @_db_operation
    def _conversation_by_turns_sync(
        self, branch_id: str | None
    ) -> dict[int, list[dict[str, str | None]]]:
        branch = self._resolve_read_branch(branch_id)
        turns: dict[int, list[dict[str, str | None]]] = {}
        rows = (
            self._structure()
            .filter(branch_id=branch)
            .order_by("sequence_number")
            .values_list("user_turn_number", "message_type", "tool_name")
        )
        for turn, message_type, tool_name in rows:
            turns.setdefault(turn, []).append({"type": message_type, "tool_name": tool_name})
        return turns

    @_db_operation
    def _tool_usage_sync(self, branch_id: str | None) -> list[tuple[str, int, int]]:
        branch = self._resolve_read_branch(branch_id)
        rows = (
            self._structure()
            .filter(
                branch_id=branch,
                message_type__in=(*classify.TOOL_CALL_TYPES, "tool_search_output"),
            )
            .values_list("message_type", "tool_name", "user_turn_number")
        )
        counts: dict[tuple[str | None, int | None], int] = {}
        outputs: list[tuple[str | None, int | None]] = []
        searched: set[tuple[str | None, int | None]] = set()
        for message_type, tool_name, turn in rows:
            if message_type == "tool_search_output":
                outputs.append((tool_name, turn))
                continue
            if message_type == "tool_search_call":
                searched.add((tool_name, turn))
            if tool_name is None and message_type in classify.TYPE_NAMED_CALL_TYPES:
                tool_name = message_type
            counts[(tool_name, turn)] = counts.get((tool_name, turn), 0) + 1
        for key in outputs:
            # An output counts only in a turn without the matching call (SQL: NULL = NULL
            # is not true, so an unnamed output never finds its call).
            if key[0] is None or key not in searched:
                counts[key] = counts.get(key, 0) + 1

        def order(entry: tuple[tuple[str | None, int | None], int]) -> tuple[bool, int, bool, str]:
            (tool, turn), _ = entry
            return (turn is not None, turn or 0, tool is not None, tool or "")

        return [(tool, n, turn) for (tool, turn), n in sorted(counts.items(), key=order)]  # type: ignore[misc]

    @_db_operation
    def _get_session_usage_sync(self, branch_id: str | None) -> dict[str, int] | None:
        self._check_not_closed()
        sid = self.session_id
        if branch_id:
            rows = self._execute(self._sql.branch_usage, [sid, branch_id])
        else:
            rows = self._execute(self._sql.session_usage, [sid])
        requests, input_tokens, output_tokens, total_tokens, turns = rows[0]
        if requests is None:
            return None
        return {
            "requests": requests or 0,
            "input_tokens": input_tokens or 0,
            "output_tokens": output_tokens or 0,
            "total_tokens": total_tokens or 0,
            "total_turns": turns or 0,
        }

    @_db_operation
    def _get_turn_usage_sync(
        self, user_turn_number: int | None, branch_id: str | None
    ) -> list[dict[str, Any]] | dict[str, Any]:
        branch = self._resolve_read_branch(branch_id)
        sid = self.session_id
        if user_turn_number is not None:
            rows = self._execute(self._sql.turn_usage_one, [sid, branch, user_turn_number])
            if not rows:
                return {}
            return _usage_dict(rows[0])
        return [
            {"user_turn_number": row[0], **_usage_dict(row[1:])}
            for row in self._execute(self._sql.turn_usage_all, [sid, branch])
        ]

    @_db_operation
    def _next_turn_sync(self, branch_id: str) -> int:
        """The turn a run adds to ``branch_id``: its newest user turn plus one (for tracing)."""
        rows = self._execute(self._sql.current_turn, [self.session_id, branch_id, branch_id])
        return int(rows[0][0] or 0) + 1 if rows else 1


def _usage_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    requests, input_tokens, output_tokens, total_tokens, input_details, output_details = row
    return {
        "requests": requests,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": total_tokens,
        "input_tokens_details": items.decode_or_none(input_details),
        "output_tokens_details": items.decode_or_none(output_details),
    }


class _TurnMatcher:
    """``find_turns_by_content``'s rule, as the SDK applies it.

    First its SQL filter: ``message_data LIKE '%<term as JSON-escaped text>%'`` (SQLite's LIKE
    folds ASCII letters only), then a regex over the text of the content or of each part.
    """

    def __init__(self, search_term: str, using: str) -> None:
        # re.escape raises the SDK's TypeError for a term that is not a string.
        self._pattern = re.compile(re.escape(search_term), re.IGNORECASE | re.ASCII)
        # jsonb renders non-ASCII characters as themselves, SQLite keeps json.dumps' escapes.
        ascii_text = connections[using].vendor != "postgresql"
        self._encoded = _ascii_folded(json.dumps(search_term, ensure_ascii=ascii_text)[1:-1])

    def prefilter(self, data: str) -> bool:
        return self._encoded in _ascii_folded(data)

    def matches(self, content: Any) -> bool:
        texts = (
            [content] if isinstance(content, str) else [part.get("text", "") for part in content]
        )
        return any(self._pattern.search(text) for text in texts)


def _ascii_folded(text: str) -> bytes:
    """UTF-8 bytes with ASCII letters lower-cased only (SQLite LIKE's case folding)."""
    return text.encode("utf-8", "surrogatepass").lower()
