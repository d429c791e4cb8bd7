"""Chat test fixtures: each test gets a fresh chat trace processor, stopped afterwards.

A chat turn registers ``dashboard.agents.tracing_processor()`` (``FORKVIEW_TRACING``) once per
process; its worker thread holds a database connection. Stopping it after each test (flush,
stop the worker, close its connection, give the SDK its previous processors back) keeps the
traces of one test out of the next and lets PostgreSQL drop the test database.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from agents.tracing import get_trace_provider

from dashboard import agents


@pytest.fixture(autouse=True)
def _stop_chat_tracing() -> Iterator[None]:
    # Tracing on, as in a server process (``seed_sessions`` disables it process-wide).
    provider = get_trace_provider()
    was_disabled = bool(getattr(provider, "_disabled", False))
    provider.set_disabled(False)
    yield
    agents.stop_tracing()
    provider.set_disabled(was_disabled)
