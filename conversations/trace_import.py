"""The bulk writer of a session tree's traces and spans (issue 16), for
:func:`conversations.exchange.tree.tree_import`, which has checked every entry first (shapes,
sizes, times, ids unique in the tree: ``tree._validate_traces``).

Trace and span ids are global (the SDK's, unique per run), while the imported session is new
here. An id already present in this database (the same tree imported before under another
session id, or a copy of the source database) is not a duplicate to skip: the file's trace
belongs to the session being imported. So a trace whose id, or any of whose span ids, is
already present is **re-identified**: it and all its spans get fresh ids in the SDK's form
(parent ids follow), and the import reports how many. Every other id is kept as it is.
Every trace is linked to the imported session (``session_id``); its branch, turn, metadata and
``group_id`` are kept as the file has them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .items import parse_timestamp
from .models import AgentSpan, AgentTrace
from .trace_follow import new_span_id, new_trace_id

__all__ = ["ResolvedTraces", "traces_resolve", "traces_write"]

#: Rows per INSERT, and ids per ``IN (...)`` lookup (inside SQLite's variable limit).
BATCH = 500


@dataclass
class ResolvedTraces:
    """A tree's traces as rows to insert, ids already made unique against the database."""

    traces: list[AgentTrace] = field(default_factory=list)
    spans: list[AgentSpan] = field(default_factory=list)
    reidentified: int = 0


def _present(
    model: type[AgentTrace] | type[AgentSpan], key: str, ids: Sequence[str], using: str
) -> set[str]:
    """The ``ids`` already in ``model``'s table (one query per :data:`BATCH`)."""
    found: set[str] = set()
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        found.update(
            model._default_manager.using(using)
            .filter(**{f"{key}__in": chunk})
            .values_list(key, flat=True)
        )
    return found


def traces_resolve(
    *, session_id: str, entries: Sequence[dict[str, Any]], using: str
) -> ResolvedTraces:
    """Rows for the validated ``entries`` (the tree's ``traces``), linked to ``session_id``,
    re-identified where an id is taken (see the module docstring). Reads only."""
    resolved = ResolvedTraces()
    if not entries:
        return resolved
    trace_ids = [entry["trace_id"] for entry in entries]
    span_ids = [span["span_id"] for entry in entries for span in entry.get("spans", [])]
    taken_traces = _present(AgentTrace, "trace_id", trace_ids, using)
    taken_spans = _present(AgentSpan, "span_id", span_ids, using)
    new_ids: dict[str, str] = {}  # span id in the file -> its id here (re-identified only)
    plan: list[tuple[dict[str, Any], str]] = []
    for entry in entries:
        spans = entry.get("spans", [])
        trace_id = entry["trace_id"]
        if trace_id in taken_traces or any(s["span_id"] in taken_spans for s in spans):
            trace_id = new_trace_id()
            new_ids.update({s["span_id"]: new_span_id() for s in spans})
            resolved.reidentified += 1
        plan.append((entry, trace_id))
    for entry, trace_id in plan:
        resolved.traces.append(
            AgentTrace(
                trace_id=trace_id,
                workflow_name=entry.get("workflow_name", ""),
                group_id=entry.get("group_id"),
                session_id=session_id,
                branch_id=entry.get("branch_id"),
                turn=entry.get("turn"),
                metadata=entry.get("metadata"),
                started_at=parse_timestamp(entry.get("started_at")),
                ended_at=parse_timestamp(entry.get("ended_at")),
            )
        )
        for span in entry.get("spans", []):
            parent = span.get("parent_id")
            resolved.spans.append(
                AgentSpan(
                    span_id=new_ids.get(span["span_id"], span["span_id"]),
                    trace_id=trace_id,
                    parent_id=new_ids.get(parent, parent) if parent is not None else None,
                    kind=span["kind"],
                    name=span.get("name", ""),
                    started_at=parse_timestamp(span.get("started_at")),
                    ended_at=parse_timestamp(span.get("ended_at")),
                    duration_ms=span.get("duration_ms"),
                    error=span.get("error"),
                    model=span.get("model"),
                    input_tokens=span.get("input_tokens"),
                    output_tokens=span.get("output_tokens"),
                    cached_input_tokens=span.get("cached_input_tokens"),
                    reasoning_tokens=span.get("reasoning_tokens"),
                    data=span.get("data", {}),
                )
            )
    return resolved


def traces_write(*, resolved: ResolvedTraces, using: str) -> int:
    """Insert the resolved rows, inside the caller's transaction. Returns how many traces."""
    _bulk(AgentTrace, resolved.traces, using)
    _bulk(AgentSpan, resolved.spans, using)
    return len(resolved.traces)


def _bulk(model: type[AgentTrace] | type[AgentSpan], rows: Iterable[Any], using: str) -> None:
    model._default_manager.using(using).bulk_create(list(rows), batch_size=BATCH)
