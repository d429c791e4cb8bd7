"""A finished live turn as the session page shows it: its rendered HTML, latency and cost.

The chat's ``turn_complete`` frame carries ``html``: the stored turn rendered by the same
partial (``dashboard/partials/_turn.html``, through the review selectors) as the chat and
review pages use after a reload (with the turn's trace line: model, latency, time to first
token, calls, cost, and its span waterfall), so the streamed plain text is replaced by the
sanitised markdown, tool cards, token badge and trace line the page shows. It is rendered after
the chat's trace processor has written the turn's trace (``force_flush``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.db import database_sync_to_async
from django.template.loader import render_to_string
from django.urls import reverse

from dashboard.agents import tracing_processor
from dashboard.review.selectors import branch_tree_get, session_traces_get, turns_get
from dashboard.review.selectors.errors import BranchNotFound, SessionNotFound

from .turns import TurnOutcome

__all__ = ["FLUSH_TIMEOUT", "finished_turn", "trace_url"]

logger = logging.getLogger(__name__)

#: Seconds the chat waits for its trace processor to write the turn's spans (for its cost).
FLUSH_TIMEOUT = 5.0


def _render(outcome: TurnOutcome) -> tuple[str | None, str | None]:
    """(the stored turn through ``_turn.html`` with its trace line, its cost in words).

    ``(None, None)`` if the turn cannot be read back (deleted meanwhile: the client keeps the
    streamed text). The cost is ``conversations.costs.describe`` of the turn's model calls
    (``$0.0042``, ``free``, ``no price``), ``None`` for a turn without a trace.
    """
    try:
        tree = branch_tree_get(session_id=outcome.session_id)
        turns = turns_get(
            tree=tree, branch_id=outcome.branch_id, first=outcome.turn, last=outcome.turn
        )
    except (SessionNotFound, BranchNotFound):
        logger.warning("Could not render turn %s of %r", outcome.turn, outcome.session_id)
        return None, None
    if not turns:
        return None, None
    trace = session_traces_get(tree=tree).turn(outcome.branch_id, outcome.turn)
    context = {"turn": turns[0], "trace": trace, "trace_url": trace_url(outcome.session_id)}
    html = render_to_string("dashboard/partials/_turn.html", context)
    return html, (trace.cost_text or None) if trace.traced else None


def trace_url(session_id: str) -> str:
    """The session's span JSON (``waterfall.js`` loads a turn's spans from it)."""
    return reverse("session_trace", kwargs={"session_id": session_id})


@database_sync_to_async
def _read(outcome: TurnOutcome) -> dict[str, Any]:
    html, cost = _render(outcome)
    return {"html": html, "cost": cost}


async def finished_turn(outcome: TurnOutcome) -> dict[str, Any]:
    """``html``, ``latency_ms``, ``ttft_ms``, ``cost`` and ``trace_id`` of a stored turn.

    Waits (at most :data:`FLUSH_TIMEOUT` s, off the event loop) for the trace processor to
    write the turn's spans first, so ``cost`` is what the session page shows after a reload.
    """
    processor = tracing_processor() if outcome.trace_id else None
    if processor is not None:
        await asyncio.to_thread(processor.force_flush, FLUSH_TIMEOUT)
    extra = await _read(outcome)
    return {
        **extra,
        "latency_ms": outcome.latency_ms,
        "ttft_ms": outcome.ttft_ms,
        "trace_id": outcome.trace_id,
    }
