"""The per-(session, branch) "turn in progress" guard of the live chat.

Two tabs (or two server processes) sending on one branch at once must not interleave turns:
the second sender gets ``busy``. The guard is non-blocking (try, never wait) and holds across
processes. It lives in :mod:`conversations.turnlocks` (next to the data, shared with the staff
services, which wait for a running turn before they edit its session or branch): a turn holds
its session's lock shared and its branch's lock exclusive. Usage::

    async with turn_guard(session_id, branch_id) as acquired:
        if not acquired:
            ...  # busy: another turn on this branch, or a staff edit of it

``FORKVIEW_TURN_LOCK`` = ``auto`` (default) or ``database``: PostgreSQL advisory locks or
SQLite ``flock``; ``redis``: Redis leases.
"""

from __future__ import annotations

from conversations.turnlocks import LEASE_MS, lock_backend, turn_guard

__all__ = ["LEASE_MS", "lock_backend", "turn_guard"]
