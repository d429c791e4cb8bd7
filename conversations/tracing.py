"""Store the Agents SDK's traces and spans in Forkview's own tables (issue 16).

Register once per process, next to the SDK's own exporter::

    from agents import add_trace_processor
    from conversations.tracing import ForkviewTracingProcessor

    add_trace_processor(ForkviewTracingProcessor())

and run with a session's config so each trace is linked to its session, branch and turn::

    result = await Runner.run(agent, text, session=session, run_config=await session.run_config())

How it works (the SDK's ``BatchTraceProcessor`` pattern): the ``on_*`` callbacks only put the
finished trace or span on a bounded queue (``put_nowait``: never blocks a run; when the queue is
full the item is dropped, counted in ``stats["dropped"]`` and logged at most every 10 s). A
daemon thread drains the queue in batches (every ``schedule_delay`` seconds, or sooner when the
queue is ``export_trigger_ratio`` full) and writes each batch in one transaction through the
Django ORM, on its own connection (closed when the thread ends; checked before each batch like a
request's). Writes are idempotent (a span is inserted once, conflicts ignored; a trace is
upserted), so a retried batch, or several processes writing to the same database, never
duplicate a row. A failed batch is logged and retried once, then dropped and counted
(``stats["failed_batches"]``, ``stats["dropped"]``): nothing raises into the run.
``force_flush()`` waits until everything queued so far is written; ``shutdown()`` (registered with
``atexit``, as the SDK does for its own provider) flushes and stops the thread.

Data policy. Timings, the span tree, names, errors' messages, models and token usage are always
stored. Contents follow the SDK's settings:

- model data (a generation's output, a response's output items): stored only when
  ``OPENAI_AGENTS_DONT_LOG_MODEL_DATA`` is off (``0``/``false``; the SDK's default is on) and
  ``OPENAI_AGENTS_TRACE_INCLUDE_SENSITIVE_DATA`` is not off;
- tool data (a function span's arguments and output, and its error's details): likewise with
  ``OPENAI_AGENTS_DONT_LOG_TOOL_DATA``;
- model *inputs* are never stored: each call's input repeats the whole conversation, which the
  session already holds (storing it would grow quadratically with the turns).

``include_model_data``/``include_tool_data`` override the environment. Independently, a run with
``RunConfig(trace_include_sensitive_data=False)`` never puts contents on its spans (the SDK
withholds them, and with them a response's model name: such response spans carry usage only).

Linking. A trace is linked to ``session_id``/``branch_id``/``turn`` from the ``forkview_session``,
``forkview_branch``, ``forkview_turn`` metadata set by ``DjangoSession.run_config()``. Without it,
a trace whose ``group_id`` is an existing session's id is linked to that session when written,
and, when its end is written (after its run stored its items), to the branch and turn of the
session's newest item: the turn its run added. This is resolved at flush time.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import re
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agents import _debug
from agents.run_config import _default_trace_include_sensitive_data
from agents.tracing import Span, Trace, TracingProcessor
from django.db import connections, transaction

from .costs import price_spans
from .models import AgentSession, AgentSpan, AgentTrace, MessageStructure, SpanKind

logger = logging.getLogger(__name__)

#: Trace metadata keys set by ``DjangoSession.trace_metadata()``.
SESSION_KEY = "forkview_session"
BRANCH_KEY = "forkview_branch"
TURN_KEY = "forkview_turn"

_KINDS = frozenset(SpanKind.values)
_NUL = re.compile(
    r"(?<!\\)((?:\\\\)*)\\u0000"
)  # an escaped NUL (not an escaped backslash + "u0000")
_DROP_LOG_INTERVAL = 10.0
_MAX_OPEN_TRACES = 10_000
_TRACE_FIELDS = [
    "workflow_name",
    "group_id",
    "session_id",
    "branch_id",
    "turn",
    "metadata",
    "started_at",
    "ended_at",
]


@dataclass(frozen=True, slots=True)
class _TraceEvent:
    """A trace's start (``ended_at`` None) or end, as queued."""

    trace: Trace
    started_at: datetime | None
    ended_at: datetime | None


_Item = _TraceEvent | Span[Any]


class ForkviewTracingProcessor(TracingProcessor):
    """An SDK ``TracingProcessor`` writing traces and spans to ``forkview_traces``/``_spans``.

    Args:
        using: The Django database alias to write to.
        max_queue_size: Items (trace starts/ends and spans) held before new ones are dropped.
        max_batch_size: Items per transaction.
        schedule_delay: Seconds between flushes of a queue that is not filling up.
        export_trigger_ratio: Flush at once when the queue is this full.
        include_model_data: Store model outputs; ``None``: from the SDK's environment.
        include_tool_data: Store tool arguments and outputs; ``None``: from the environment.
    """

    def __init__(
        self,
        *,
        using: str = "default",
        max_queue_size: int = 8192,
        max_batch_size: int = 256,
        schedule_delay: float = 1.0,
        export_trigger_ratio: float = 0.5,
        include_model_data: bool | None = None,
        include_tool_data: bool | None = None,
    ) -> None:
        sensitive = _default_trace_include_sensitive_data()
        self.using = using
        self.include_model_data = (
            include_model_data
            if include_model_data is not None
            else sensitive and not _debug.DONT_LOG_MODEL_DATA
        )
        self.include_tool_data = (
            include_tool_data
            if include_tool_data is not None
            else sensitive and not _debug.DONT_LOG_TOOL_DATA
        )
        self._max_queue_size = max_queue_size
        self._max_batch_size = max_batch_size
        self._schedule_delay = schedule_delay
        self._trigger = max(1, int(max_queue_size * export_trigger_ratio))
        self._stats_lock = threading.Lock()
        self._stats = {
            "written_traces": 0,
            "written_spans": 0,
            "dropped": 0,
            "failed_batches": 0,
        }
        self._reset()
        _PROCESSORS.add(self)

    def _reset(self) -> None:
        """Fresh queue, thread state and locks (at construction, and in a forked child: the
        parent's worker thread does not exist there, and its locks may be held)."""
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=self._max_queue_size)
        self._starts: dict[str, datetime] = {}
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._waiters: list[threading.Event] = []
        self._dropped_since_log = 0
        self._last_drop_log = 0.0

    # ---- Stats --------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``written_traces`` (trace rows written: a trace's start and its end are
        one write when they share a batch, two otherwise), ``written_spans``, ``dropped``
        (items), ``failed_batches`` (attempts), and ``queued`` (now)."""
        with self._stats_lock:
            return {**self._stats, "queued": self._queue.qsize()}

    def _count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self._stats[key] += n

    # ---- The SDK's callbacks (the run's thread: enqueue only) ---------------------------

    def on_trace_start(self, trace: Trace) -> None:
        try:
            now = datetime.now(UTC)
            if len(self._starts) >= _MAX_OPEN_TRACES:  # traces that never ended: forget one
                self._starts.pop(next(iter(self._starts)), None)
            self._starts[trace.trace_id] = now
            self._enqueue(_TraceEvent(trace, now, None))
        except Exception:  # never into the run
            logger.exception("[non-fatal] Forkview tracing: on_trace_start failed")

    def on_trace_end(self, trace: Trace) -> None:
        try:
            now = datetime.now(UTC)
            started = self._starts.pop(trace.trace_id, None)
            self._enqueue(_TraceEvent(trace, started or now, now))
        except Exception:
            logger.exception("[non-fatal] Forkview tracing: on_trace_end failed")

    def on_span_start(self, span: Span[Any]) -> None:
        pass  # spans are stored when they end

    def on_span_end(self, span: Span[Any]) -> None:
        try:
            self._enqueue(span)
        except Exception:
            logger.exception("[non-fatal] Forkview tracing: on_span_end failed")

    def _enqueue(self, item: _Item) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._start_thread()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._dropped(1)
            return
        if self._queue.qsize() >= self._trigger:
            self._wake.set()

    def _dropped(self, n: int) -> None:
        self._count("dropped", n)
        now = time.monotonic()
        with self._stats_lock:
            self._dropped_since_log += n
            if now - self._last_drop_log < _DROP_LOG_INTERVAL:
                return
            self._last_drop_log, count, self._dropped_since_log = now, self._dropped_since_log, 0
        logger.warning("[non-fatal] Forkview tracing: dropped %d trace items (queue full)", count)

    # ---- Flushing -----------------------------------------------------------------------

    def force_flush(self, timeout: float | None = 30.0) -> None:
        """Wait (up to ``timeout`` seconds) until everything queued before the call is written.

        The writing happens on the worker thread (so this is safe to call from anywhere,
        including a coroutine, where Django refuses synchronous queries).
        """
        with self._thread_lock:
            if self._stopping:
                return
        done = threading.Event()
        with self._stats_lock:
            self._waiters.append(done)
        self._start_thread()
        self._wake.set()
        if not done.wait(timeout):
            logger.warning("[non-fatal] Forkview tracing: force_flush timed out")

    def shutdown(self, timeout: float | None = 30.0) -> None:
        """Write what is queued, stop the worker and close its connection. Idempotent."""
        with self._thread_lock:
            self._stopping = True
            thread = self._thread
        atexit.unregister(self.shutdown)
        if thread is not None and thread.is_alive():
            self._wake.set()
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("[non-fatal] Forkview tracing: shutdown timed out")

    def _start_thread(self) -> None:
        with self._thread_lock:
            if self._stopping or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(target=self._run, name="forkview-tracing", daemon=True)
            self._thread.start()
            atexit.register(self.shutdown)

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self._schedule_delay)
                self._wake.clear()
                with self._stats_lock:
                    waiters, self._waiters = self._waiters, []
                stopping = self._stopping
                self._drain()
                for waiter in waiters:
                    waiter.set()
                if stopping:
                    return
        finally:
            try:
                connections[self.using].close()
            except Exception:
                logger.exception("[non-fatal] Forkview tracing: closing the connection failed")
            with self._stats_lock:
                waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.set()

    def _drain(self) -> None:
        while True:
            batch: list[_Item] = []
            while len(batch) < self._max_batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not batch:
                return
            self._write_batch(batch)

    def _write_batch(self, batch: list[_Item]) -> None:
        for attempt in (1, 2):
            try:
                traces, spans = self._rows(batch)
                connections[self.using].close_if_unusable_or_obsolete()
                self._write(traces, spans)
            except Exception:
                logger.exception(
                    "[non-fatal] Forkview tracing: writing %d items failed (attempt %d)",
                    len(batch),
                    attempt,
                )
                self._count("failed_batches")
                try:
                    connections[self.using].close()
                except Exception:
                    pass
                if attempt == 1:
                    time.sleep(0.05)
                    continue
                self._dropped(len(batch))
            else:
                self._count("written_traces", len(traces))
                self._count("written_spans", len(spans))
            return

    def _write(self, traces: list[AgentTrace], spans: list[AgentSpan]) -> None:
        price_spans(spans)  # before the transaction: SQLite's write lock is not held for it
        with transaction.atomic(using=self.using):
            if traces:
                AgentTrace.objects.using(self.using).bulk_create(
                    traces,
                    update_conflicts=True,
                    unique_fields=["trace_id"],
                    update_fields=_TRACE_FIELDS,
                )
            if spans:
                AgentSpan.objects.using(self.using).bulk_create(spans, ignore_conflicts=True)

    # ---- Rows ---------------------------------------------------------------------------

    def _rows(self, batch: Iterable[_Item]) -> tuple[list[AgentTrace], list[AgentSpan]]:
        events: dict[str, _TraceEvent] = {}
        spans: dict[str, AgentSpan] = {}
        for item in batch:
            if isinstance(item, _TraceEvent):
                # A start and an end in one batch: the end (it carries both times) wins.
                events[item.trace.trace_id] = item
            else:
                row = self.span_row(item)
                spans[row.span_id] = row
        return self._trace_rows(list(events.values())), list(spans.values())

    def _trace_rows(self, events: list[_TraceEvent]) -> list[AgentTrace]:
        rows = []
        for event in events:
            trace = event.trace
            exported = trace.export() or {}
            metadata = _jsonable(exported.get("metadata"))
            group_id = exported.get("group_id")
            row = AgentTrace(
                trace_id=trace.trace_id,
                workflow_name=str(exported.get("workflow_name") or trace.name or ""),
                group_id=str(group_id) if group_id is not None else None,
                metadata=metadata,
                started_at=event.started_at,
                ended_at=event.ended_at,
            )
            if isinstance(metadata, dict) and metadata.get(SESSION_KEY):
                row.session_id = str(metadata[SESSION_KEY])
                branch = metadata.get(BRANCH_KEY)
                row.branch_id = str(branch) if branch else None
                row.turn = _int_or_none(metadata.get(TURN_KEY))
            rows.append(row)
        self._link_by_group(rows, {e.trace.trace_id for e in events if e.ended_at is not None})
        return rows

    def _link_by_group(self, rows: list[AgentTrace], ended: set[str]) -> None:
        """Fallback: a trace without Forkview metadata whose group_id is a session id."""
        unlinked = [r for r in rows if r.session_id is None and r.group_id]
        if not unlinked:
            return
        known = set(
            AgentSession.objects.using(self.using)
            .filter(session_id__in={r.group_id for r in unlinked})
            .values_list("session_id", flat=True)
        )
        for row in unlinked:
            if row.group_id not in known:
                continue
            row.session_id = row.group_id
            if row.trace_id in ended:
                newest = (
                    MessageStructure.objects.using(self.using)
                    .filter(session_id=row.session_id)
                    .order_by("-sequence_number")
                    .values_list("branch_id", "user_turn_number")
                    .first()
                )
                if newest is not None:
                    row.branch_id, row.turn = newest

    def span_row(self, span: Span[Any]) -> AgentSpan:
        """The row for one finished span, with the data policy applied."""
        data_obj = span.span_data
        kind = str(getattr(data_obj, "type", "other"))
        if kind not in _KINDS:
            kind = SpanKind.OTHER
        exported = dict(data_obj.export())
        model: str | None = None
        usage: Any = None
        withheld = False
        if kind == SpanKind.RESPONSE:
            response = getattr(data_obj, "response", None)
            usage = getattr(data_obj, "usage", None)
            if response is not None:
                model = getattr(response, "model", None)
                if usage is None and getattr(response, "usage", None) is not None:
                    usage = response.usage.model_dump(mode="json")
                if self.include_model_data:
                    exported["output"] = [
                        item.model_dump(mode="json", exclude_none=True)
                        for item in (response.output or [])
                    ]
                else:
                    withheld = True
        elif kind == SpanKind.GENERATION:
            model = exported.get("model")
            usage = exported.get("usage")
            exported.pop("input", None)  # never stored (see the module's docstring)
            if not self.include_model_data and exported.pop("output", None) is not None:
                withheld = True
        elif kind == SpanKind.FUNCTION:
            if not self.include_tool_data:
                removed = [exported.pop(key, None) for key in ("input", "output")]
                withheld = any(value is not None for value in removed)
        elif kind in (SpanKind.TRANSCRIPTION, SpanKind.SPEECH, SpanKind.SPEECH_GROUP):
            model = exported.get("model")
            if not self.include_model_data:
                exported.pop("input", None)
                exported.pop("output", None)
                withheld = True
        elif kind in (SpanKind.TASK, SpanKind.TURN):
            usage = getattr(data_obj, "usage", None)
        if withheld:
            exported["withheld"] = True
        tokens = _tokens(usage) if kind in (SpanKind.RESPONSE, SpanKind.GENERATION) else {}
        error: dict[str, Any] | None = dict(span.error) if span.error is not None else None
        if error is not None and kind == SpanKind.FUNCTION and not self.include_tool_data:
            error.pop("data", None)
        started = _parse_time(span.started_at)
        ended = _parse_time(span.ended_at)
        return AgentSpan(
            span_id=span.span_id,
            trace_id=span.trace_id,
            parent_id=span.parent_id,
            kind=kind,
            name=_span_name(kind, exported, model),
            started_at=started,
            ended_at=ended,
            duration_ms=((ended - started).total_seconds() * 1000 if started and ended else None),
            error=_jsonable(error),
            model=str(model) if model else None,
            data=_jsonable(exported) or {},
            **tokens,
        )


_PROCESSORS: weakref.WeakSet[ForkviewTracingProcessor] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for processor in list(_PROCESSORS):
        processor._stats_lock = threading.Lock()
        processor._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _span_name(kind: str, exported: Mapping[str, Any], model: str | None) -> str:
    if kind == SpanKind.HANDOFF:
        return f"{exported.get('from_agent') or '?'} → {exported.get('to_agent') or '?'}"
    if kind in (SpanKind.RESPONSE, SpanKind.GENERATION):
        return model or ""
    if kind == SpanKind.TURN:
        return str((exported.get("data") or {}).get("agent_name") or "")
    if kind == SpanKind.MCP_TOOLS:
        return str(exported.get("server") or "")
    return str(exported.get("name") or "")


def _tokens(usage: Any) -> dict[str, int | None]:
    """Input, output, cached input and reasoning tokens from a span's usage dict (the
    Responses shape, or chat completions' ``prompt_tokens``/``completion_tokens``)."""
    if not isinstance(usage, Mapping):
        return {}
    input_details = usage.get("input_tokens_details") or usage.get("prompt_tokens_details") or {}
    output_details = (
        usage.get("output_tokens_details") or usage.get("completion_tokens_details") or {}
    )
    cached = input_details.get("cached_tokens") if isinstance(input_details, Mapping) else None
    reasoning = (
        output_details.get("reasoning_tokens") if isinstance(output_details, Mapping) else None
    )
    return {
        "input_tokens": _int_or_none(usage.get("input_tokens", usage.get("prompt_tokens"))),
        "output_tokens": _int_or_none(usage.get("output_tokens", usage.get("completion_tokens"))),
        "cached_input_tokens": _int_or_none(
            cached if cached is not None else usage.get("cached_input_tokens")
        ),
        "reasoning_tokens": _int_or_none(reasoning),
    }


def _int_or_none(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON both databases store: unknown objects as ``str``, NaN and
    infinities as null, lone surrogates replaced, NUL characters (PostgreSQL) removed."""
    if value is None:
        return None
    text = json.dumps(value, default=str, ensure_ascii=False)
    text = _NUL.sub(r"\1", text.encode("utf-8", "replace").decode("utf-8"))
    return json.loads(text, parse_constant=lambda _constant: None)
