"""Running one live-chat turn: stream it, store it whole, count it, tell the viewers.

The websocket consumer is a thin transport over this module; the benchmark calls it too.

What is stored, and when
------------------------
The SDK's streamed ``Runner`` (openai-agents 0.24) writes to its session *incrementally*:
the user input before the first model call, each tool call + output after its step, the
final answer at the end (verified: a model error after a tool call leaves ``user``,
``function_call`` and ``function_call_output`` stored and no answer). A failed or cancelled
turn would leave a half turn on the branch, and a retry would add a second user message.

Forkview stores a turn **whole or not at all**: the Runner writes into a :class:`TurnBuffer`
(a ``Session`` that reads through to the branch and keeps this turn's new items in memory),
and only a successful run commits them, in **one** ``DjangoSession.add_items`` call (one
transaction, the session's writer lock held once). Then ``store_run_usage(result)`` records
the turn's tokens. A model error, a timeout or a cancellation discards the buffer: the branch
is exactly as before and the user can simply resend. A server crash mid-turn also loses
only the unfinished turn.

Concurrency: the caller holds :func:`dashboard.chat.locks.turn_guard` for (session, branch) around
:func:`run_turn`, so turns on one branch never interleave, across processes, and staff edits
of the session or branch wait for the turn (``conversations.turnlocks``). The turn also
anchors itself (``DjangoSession.branch_anchor``) and commits with
``DjangoSession.add_items_at``: if its branch was renamed or deleted, or its session deleted
or cleared, before or while it ran, nothing is stored and :class:`TurnRefused` says why. A
turn never recreates a deleted session or branch, and never lands on a renamed branch's old id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agents import Agent, RunConfig, Runner, TResponseInputItem, _debug
from agents.memory.session import SessionABC
from agents.memory.session_settings import resolve_session_limit
from agents.tracing import Span, custom_span
from agents.tracing.traces import NoOpTrace
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db.models import Max

from conversations.items import decode
from conversations.models import MAIN_BRANCH, MessageStructure
from conversations.session import BranchAnchor, BranchGone, DjangoSession
from conversations.tracing import TURN_KEY
from dashboard.agents import get_agent, run_config, tracing_processor

from .context import ChatContext
from .protocol import DELTA, MESSAGE, TURN_COMPLETE, Message, group_name, protocol_event

__all__ = [
    "Emit",
    "TurnBuffer",
    "TurnCancelled",
    "TurnControl",
    "TurnInput",
    "TurnOutcome",
    "TurnRefused",
    "TurnTimeout",
    "fork_branch",
    "log_turn_failure",
    "notify",
    "run_turn",
    "turn_anchor",
    "turn_input",
    "turn_run_config",
]

#: The custom span a chat turn records from the start of the run to its first text (ms in
#: ``data["ttft_ms"]``; the span's own duration is the same time): see docs/tracing.md.
TTFT_SPAN = "time_to_first_token"
#: Trace metadata: the chat turn's time to first token in ms (a string, as metadata values are).
TTFT_KEY = "forkview_ttft_ms"
#: Trace metadata of a turn that was not stored (see :func:`_unstored`).
OUTCOME_KEY = "forkview_outcome"

logger = logging.getLogger(__name__)

#: Receives each protocol message of a turn as it happens.
Emit = Callable[[Message], Awaitable[None]]
#: What a turn sends the model: the user's text, or input items.
TurnInput = str | list[TResponseInputItem]


class TurnTimeout(Exception):
    """The model did not finish the turn in time (nothing was stored)."""


class TurnCancelled(Exception):
    """The client cancelled the turn (``cancel``) before it was stored: nothing was stored."""


class TurnControl:
    """Lets a client stop a running turn (the chat's ``cancel``).

    :meth:`cancel` stops the turn while the model runs (before it is started too); once the
    turn is being stored it is too late (``False``: the turn completes as usual), so a
    cancelled turn is never half stored.
    """

    def __init__(self) -> None:
        self.cancelled = False
        self.storing = False
        self._stream: asyncio.Task[None] | None = None

    def requested(self) -> bool:
        """Whether :meth:`cancel` stopped (or will stop) the turn."""
        return self.cancelled

    def cancel(self) -> bool:
        """Stop the turn; ``True`` if it will stop without storing anything."""
        if self.storing:
            return False
        self.cancelled = True
        if self._stream is not None:
            self._stream.cancel()
        return True


class TurnRefused(Exception):
    """The turn's branch or session went away (renamed, deleted, cleared): nothing stored.

    Its text is meant for the chat user as it is (one line, no traceback).
    """


def _copy(items: list[TResponseInputItem]) -> list[TResponseInputItem]:
    """A JSON round trip: a copy the SDK cannot mutate, and unserialisable items fail now."""
    copied: list[TResponseInputItem] = decode(json.dumps(items))
    return copied


# ---- The buffer session --------------------------------------------------------------------


class TurnBuffer(SessionABC):
    """A ``Session`` that reads the branch through ``inner`` and holds this turn's writes.

    ``get_items`` returns the stored history followed by the pending items (honouring
    ``limit``), ``pop_item`` pops pending items first (the SDK rewinds its own writes when a
    model request is retried), and :meth:`commit` appends everything pending in one call.
    """

    def __init__(self, inner: DjangoSession) -> None:
        self.inner = inner
        self.session_id = inner.session_id
        self.session_settings = inner.session_settings
        self.pending: list[TResponseInputItem] = []

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        limit = resolve_session_limit(limit, self.session_settings)
        pending = _copy(self.pending)
        if limit is None or limit < 0:
            return [*(await self.inner.get_items(-1)), *pending]
        if limit == 0:
            return []
        if limit <= len(pending):
            return pending[-limit:]
        return [*(await self.inner.get_items(limit - len(pending))), *pending]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        self.pending.extend(_copy(items))

    async def pop_item(self) -> TResponseInputItem | None:
        if self.pending:
            return self.pending.pop()
        return await self.inner.pop_item()

    async def clear_session(self) -> None:
        self.pending.clear()
        await self.inner.clear_session()

    async def commit(self, anchor: BranchAnchor | None = None) -> int:
        """Write the pending items to the branch in one transaction; return how many.

        With ``anchor``, only if the branch is still the one the turn started on.

        Raises:
            BranchGone: ``anchor``'s branch or session went away (nothing was written).
        """
        items, self.pending = self.pending, []
        if items:
            if anchor is None:
                await self.inner.add_items(items)
            else:
                await self.inner.add_items_at(items, anchor)
        return len(items)


# ---- Running a turn ------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnOutcome:
    """A stored turn: where it landed and what it cost."""

    session_id: str
    branch_id: str
    turn: int
    usage: dict[str, int]
    final_output: str
    items_stored: int
    events: int = field(default=0, compare=False)
    #: The branch after this turn, for the next turn's ``anchor``.
    anchor: BranchAnchor | None = field(default=None, compare=False)
    #: Wall time of the run (model calls and tools), and until its first text, in ms.
    latency_ms: int | None = field(default=None, compare=False)
    ttft_ms: int | None = field(default=None, compare=False)
    #: The run's trace (``None`` when tracing is off).
    trace_id: str | None = field(default=None, compare=False)

    def message(self) -> Message:
        """The ``turn_complete`` message of this turn."""
        return {
            "type": TURN_COMPLETE,
            "session_id": self.session_id,
            "branch_id": self.branch_id,
            "turn": self.turn,
            "usage": self.usage,
        }


def turn_input(content: Any) -> TurnInput:
    """Runner input for a user message's stored ``content`` (text, or a list of parts)."""
    if isinstance(content, str):
        return content
    return [{"role": "user", "content": content}]


async def run_turn(
    *,
    session_id: str,
    branch_id: str = MAIN_BRANCH,
    input: TurnInput,
    emit: Emit | None = None,
    agent: Agent[Any] | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - the turn owns its deadline
    using: str = "default",
    notify_viewers: bool = True,
    context: ChatContext | None = None,
    anchor: BranchAnchor | None = None,
    control: TurnControl | None = None,
) -> TurnOutcome:
    """Run one streamed turn on (session, branch), store it whole, return its outcome.

    Args:
        session_id: The conversation; created on the first stored item.
        branch_id: The branch to continue.
        input: The user's message (a string, or input items).
        emit: Receives each protocol event (``delta``, ``tool_call``, ``tool_output``,
            ``message``) as it happens. The caller sends ``turn_complete`` itself.
        agent: The agent; ``get_agent()`` if ``None``.
        timeout: Seconds for the whole turn; ``None`` waits forever.
        using: The database alias.
        notify_viewers: Send ``turn_complete`` to the session's group afterwards.
        context: The SDK run context (who is acting); tools read it from their
            ``RunContextWrapper``.
        anchor: The branch as the client last saw it (:func:`turn_anchor` when the socket
            opened, then ``outcome.anchor`` of each turn): the turn is refused if the session
            was cleared or deleted, or the branch renamed or deleted, since. ``None``: as the
            turn starts.

    Raises:
        TurnTimeout: The turn took longer than ``timeout`` (nothing stored).
        TurnRefused: The branch was renamed or deleted, or the session deleted or cleared,
            before or during the turn (nothing stored; the model is not called if before).
        TurnCancelled: ``control.cancel()`` stopped the turn (nothing stored).
        Exception: Whatever the model or a tool raised (nothing stored).
    """
    agent = agent if agent is not None else get_agent()
    session = DjangoSession(session_id=session_id, branch_id=branch_id, using=using)
    if anchor is not None and anchor.branch_id != branch_id:
        raise ValueError(f"The anchor is for branch {anchor.branch_id!r}, not {branch_id!r}")
    try:
        anchor = await session.branch_anchor(anchor)
    except BranchGone as exc:
        raise TurnRefused(str(exc)) from None
    buffer = TurnBuffer(session)
    control = control if control is not None else TurnControl()
    if control.cancelled:
        raise TurnCancelled("Cancelled before the model was called.")
    config = await turn_run_config(session, agent)
    started = time.monotonic()
    result = Runner.run_streamed(agent, input, session=buffer, run_config=config, context=context)
    ttft = _FirstToken(result, started)
    sent = 0

    async def stream() -> None:
        nonlocal sent
        async with asyncio.timeout(timeout):
            async for event in result.stream_events():
                message = protocol_event(event)
                if message is None:
                    continue
                if message["type"] in (DELTA, MESSAGE):
                    ttft.mark()
                if emit is not None:
                    sent += 1
                    await emit(message)

    control._stream = task = asyncio.ensure_future(stream())
    try:
        if control.requested():  # cancelled while the run was being set up
            task.cancel()
        await task
    except TimeoutError as exc:
        _unstored(result, "timeout")
        raise TurnTimeout(f"The model did not finish within {timeout:g} s.") from exc
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if control.requested() and not (current is not None and current.cancelling()):
            _unstored(result, "cancelled")
            raise TurnCancelled("Cancelled by the user: nothing was stored.") from None
        _unstored(result, "failed")
        raise
    except BaseException:
        _unstored(result, "failed")
        raise
    finally:
        control._stream = None
        ttft.close()
    control.storing = True
    latency = round((time.monotonic() - started) * 1000)
    try:
        stored = await buffer.commit(anchor)
    except BranchGone as exc:
        _unstored(result, "refused")
        raise TurnRefused(str(exc)) from None
    except BaseException:
        _unstored(result, "failed")
        raise
    await session.store_run_usage(result)
    usage = result.context_wrapper.usage
    outcome = TurnOutcome(
        session_id=session_id,
        branch_id=branch_id,
        turn=await _latest_turn(session_id, branch_id, using),
        usage={
            "requests": usage.requests,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
        },
        final_output=str(result.final_output or ""),
        items_stored=stored,
        events=sent,
        anchor=BranchAnchor(
            branch_id=branch_id,
            generation=anchor.generation,
            had_rows=anchor.had_rows or stored > 0,
        ),
        latency_ms=latency,
        ttft_ms=ttft.ms,
        trace_id=_trace_id(result),
    )
    if notify_viewers:
        await notify(session_id, outcome.message())
    return outcome


async def turn_run_config(session: DjangoSession, agent: Agent[Any]) -> RunConfig:
    """The chat turn's ``RunConfig``: the agent plug-in's (``dashboard.agents.run_config``)
    with the session's trace links (``DjangoSession.run_config``: ``group_id`` = the session
    id, ``forkview_session``/``_branch``/``_turn`` metadata). Registers the chat's trace
    processor first (``FORKVIEW_TRACING``), so the turn's trace lands in Forkview's tables."""
    tracing_processor()
    base = run_config(agent)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.init}
    fields.pop("group_id", None)
    return await session.run_config(**fields)


def _trace_id(result: Any) -> str | None:
    """The run's trace id; ``None`` untraced (tracing off: the SDK's no-op trace)."""
    trace = result.trace
    return None if trace is None or isinstance(trace, NoOpTrace) else str(trace.trace_id)


def _unstored(result: Any, outcome: str) -> None:
    """Stop a run whose turn will not be stored, and unlink its trace from the turn.

    The trace (what the model did and used: tokens were spent) is kept, linked to its
    session and branch but to no turn (the next turn reuses the number), with
    ``forkview_outcome`` = ``cancelled`` / ``timeout`` / ``failed`` / ``refused`` in its
    metadata. The processor reads the metadata when it writes the trace's end, which the SDK
    emits after this (the run loop's ``finally``), so a start written earlier is corrected.
    """
    result.cancel()
    trace = result.trace
    metadata = getattr(trace, "metadata", None)
    if isinstance(metadata, dict):
        metadata.pop(TURN_KEY, None)
        metadata[OUTCOME_KEY] = outcome


class _FirstToken:
    """Time to first token, in the run's trace two ways: the trace metadata
    ``forkview_ttft_ms`` (what the session page reads) and a ``time_to_first_token`` custom
    span from the start of the run to its first text (``data.ttft_ms``; a bar in the span
    waterfall). Without text (cancelled before it) neither is written."""

    def __init__(self, result: Any, started: float) -> None:
        self.started = started
        self.ms: int | None = None
        self.span: Span[Any] | None = None
        self.metadata = getattr(result.trace, "metadata", None)
        if result.trace is not None and not isinstance(result.trace, NoOpTrace):
            self.span = custom_span(TTFT_SPAN, data={}, parent=result.trace)
            self.span.start()

    def mark(self) -> None:
        if self.ms is not None:
            return
        self.ms = round((time.monotonic() - self.started) * 1000)
        if isinstance(self.metadata, dict):  # written with the trace's end (after this)
            self.metadata[TTFT_KEY] = str(self.ms)
        span, self.span = self.span, None
        if span is not None:
            span.span_data.data["ttft_ms"] = self.ms
            span.finish()

    def close(self) -> None:
        self.span = None  # never finished: not stored (spans are stored when they end)


async def turn_anchor(
    *, session_id: str, branch_id: str = MAIN_BRANCH, using: str = "default"
) -> BranchAnchor:
    """The branch as a client sees it now (when its socket opens, after a fork): pass it
    as ``run_turn(anchor=...)`` so a turn never lands on a branch that went away since."""
    session = DjangoSession(session_id=session_id, branch_id=branch_id, using=using)
    return await session.branch_anchor()


@database_sync_to_async
def _latest_turn(session_id: str, branch_id: str, using: str) -> int:
    value: int | None = (
        MessageStructure.objects.using(using)
        .filter(session_id=session_id, branch_id=branch_id, message_type="user")
        .aggregate(turn=Max("branch_turn_number"))["turn"]
    )
    return value or 0


async def fork_branch(
    *, session_id: str, branch_id: str, turn: int, using: str = "default"
) -> tuple[str, Any]:
    """Branch from ``turn`` of ``branch_id``; return (new branch id, that turn's user content).

    Raises:
        ValueError: No user message at that turn on that branch.
    """
    session = DjangoSession(session_id=session_id, branch_id=branch_id, using=using)
    turns = await session.get_conversation_turns()
    content = next((t["full_content"] for t in turns if t["turn"] == turn), None)
    new_branch = await session.create_branch_from_turn(turn)
    return new_branch, content


async def notify(session_id: str, message: Message) -> None:
    """Send a protocol message to everyone watching the session (best effort)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(
            group_name(session_id), {"type": "session.event", "message": message}
        )
    except Exception:  # a notification must never fail the turn that was stored
        logger.warning("Could not notify viewers of %r", session_id, exc_info=True)


def log_turn_failure(
    target: logging.Logger, session_id: str, branch_id: str, exc: BaseException
) -> None:
    """Log a failed turn as the SDK logs model and tool failures (its data policies).

    A model's or tool's error may quote the conversation (an API echoing its input, a tool
    repeating its arguments). With ``DONT_LOG_MODEL_DATA`` or ``DONT_LOG_TOOL_DATA`` on (the
    SDK's defaults) the line keeps the ids, the exception types and the stack (file, line,
    code) and leaves out every exception message, chained ones included; with both off it
    is an ordinary ``logger.exception`` line.
    """
    where = f"Chat turn failed on {session_id!r} / {branch_id!r}"
    if not (_debug.DONT_LOG_MODEL_DATA or _debug.DONT_LOG_TOOL_DATA):
        target.error("%s", where, exc_info=(type(exc), exc, exc.__traceback__))
        return
    chain: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = "".join(traceback.format_tb(current.__traceback__))
        chain.append(f"{type(current).__qualname__} (message redacted)\n{frames}")
        current = current.__cause__ or current.__context__
    target.error(
        "%s: %s [DONT_LOG_MODEL_DATA]\nTraceback (most recent call last, innermost first):\n%s",
        where,
        type(exc).__qualname__,
        "".join(chain).rstrip(),
    )
