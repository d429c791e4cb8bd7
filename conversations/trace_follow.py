"""Traces follow their session (issue 16): the ``follow_*`` rules for ``forkview_traces`` and
``forkview_spans``, called by :mod:`conversations.writes` next to ``reviews.follow_*``, in the
same transaction as the change they follow.

- a deleted session (``SessionWriter.clear``) or branch (``delete_branch``): its linked traces
  and their spans are deleted;
- a renamed branch: its traces move with it (``AgentTrace.branch_id``);
- a duplicated session (``session_copy``): its traces and spans are copied with new trace and
  span ids (parent ids mapped to the copies), linked to the copy; a ``group_id`` or a
  ``forkview_session`` metadata value naming the source session names the copy.

A popped turn keeps its traces (they record what ran; the turn's number is reused by the next
run, whose trace is a second trace of that turn). Traces are linked by plain text columns and
written by the tracing processor in the background: a span that reaches the database after its
session or branch was deleted stays, unlinked (its trace's row, when it lands, is linked again
from its metadata only if the session exists again).
"""

from __future__ import annotations

import secrets
from typing import Any

from .models import AgentSpan, AgentTrace
from .tracing import SESSION_KEY

__all__ = ["follow_copy", "follow_delete", "follow_rename", "new_span_id", "new_trace_id"]

#: Rows per INSERT of a copy.
BATCH = 500


def new_trace_id() -> str:
    """A fresh id in the SDK's form (``trace_`` + 32 hex digits)."""
    return f"trace_{secrets.token_hex(16)}"


def new_span_id() -> str:
    """A fresh id in the SDK's form (``span_`` + 24 hex digits)."""
    return f"span_{secrets.token_hex(12)}"


def follow_delete(*, session_id: str, branch_id: str | None = None, using: str) -> int:
    """A session (``branch_id=None``) or a branch was deleted: so are its traces and their
    spans. Returns the number of traces deleted."""
    traces = AgentTrace.objects.using(using).filter(session_id=session_id)
    if branch_id is not None:
        traces = traces.filter(branch_id=branch_id)
    AgentSpan.objects.using(using).filter(trace_id__in=traces.values("trace_id")).delete()
    deleted: int = traces.delete()[0]
    return deleted


def follow_rename(*, session_id: str, old: str, new: str, using: str) -> int:
    """A branch was renamed: its traces move with it. Returns how many."""
    moved: int = (
        AgentTrace.objects.using(using)
        .filter(session_id=session_id, branch_id=old)
        .update(branch_id=new)
    )
    return moved


def _renamed(value: Any, session_id: str, new_session_id: str) -> Any:
    """Trace metadata with ``forkview_session`` naming the copy (other keys as they are)."""
    if isinstance(value, dict) and value.get(SESSION_KEY) == session_id:
        return {**value, SESSION_KEY: new_session_id}
    return value


def follow_copy(*, session_id: str, new_session_id: str, using: str) -> int:
    """A session was duplicated: its traces and spans are copied to the copy, with new ids.
    Returns the number of traces copied."""
    sources = list(
        AgentTrace.objects.using(using).filter(session_id=session_id).order_by("trace_id")
    )
    if not sources:
        return 0
    trace_ids = {trace.trace_id: new_trace_id() for trace in sources}
    spans = list(
        AgentSpan.objects.using(using)
        .filter(trace_id__in=list(trace_ids))
        .order_by("trace_id", "span_id")
    )
    span_ids = {span.span_id: new_span_id() for span in spans}
    AgentTrace.objects.using(using).bulk_create(
        [
            AgentTrace(
                trace_id=trace_ids[t.trace_id],
                workflow_name=t.workflow_name,
                group_id=new_session_id if t.group_id == session_id else t.group_id,
                session_id=new_session_id,
                branch_id=t.branch_id,
                turn=t.turn,
                metadata=_renamed(t.metadata, session_id, new_session_id),
                started_at=t.started_at,
                ended_at=t.ended_at,
            )
            for t in sources
        ],
        batch_size=BATCH,
    )
    AgentSpan.objects.using(using).bulk_create(
        [
            AgentSpan(
                span_id=span_ids[s.span_id],
                trace_id=trace_ids[s.trace_id],
                # A parent outside the copied spans (never written, or another trace's) stays.
                parent_id=span_ids.get(s.parent_id, s.parent_id) if s.parent_id else None,
                kind=s.kind,
                name=s.name,
                started_at=s.started_at,
                ended_at=s.ended_at,
                duration_ms=s.duration_ms,
                error=s.error,
                model=s.model,
                input_tokens=s.input_tokens,
                output_tokens=s.output_tokens,
                cached_input_tokens=s.cached_input_tokens,
                reasoning_tokens=s.reasoning_tokens,
                data=s.data,
            )
            for s in spans
        ],
        batch_size=BATCH,
    )
    return len(sources)
