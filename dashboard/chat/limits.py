"""The per-user cap on concurrent chat turns, across every server process.

``FORKVIEW_MAX_TURNS_PER_USER`` (default 3; ``0`` or less: no cap) turns of one user may run
at once, whatever the sockets, tabs and processes they run in. Each running turn holds one of
the user's N *slots*; a slot is the chat's own cross-process guard,
:func:`dashboard.chat.locks.turn_guard`, on a key no session can have (it starts with NUL,
which no stored session id holds), so it works wherever the per-branch guard works (Redis,
PostgreSQL advisory locks, SQLite ``flock``) and a crashed process frees its slots the same
way. Usage::

    async with user_turn_slot(user.pk) as acquired:
        if not acquired:
            ...  # over the cap: tell the client
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from django.conf import settings

from .locks import turn_guard

__all__ = ["DEFAULT_MAX_TURNS_PER_USER", "max_turns_per_user", "user_turn_slot"]

DEFAULT_MAX_TURNS_PER_USER = 3


def max_turns_per_user() -> int:
    """``settings.FORKVIEW_MAX_TURNS_PER_USER`` (``<= 0``: no cap)."""
    return int(getattr(settings, "FORKVIEW_MAX_TURNS_PER_USER", DEFAULT_MAX_TURNS_PER_USER))


def _slot_key(user_key: object) -> str:
    return f"\x00forkview-user:{user_key}"


@contextlib.asynccontextmanager
async def user_turn_slot(user_key: object, *, using: str = "default") -> AsyncIterator[bool]:
    """Take one of the user's free turn slots; yield whether one was free.

    Args:
        user_key: The user's primary key (any value with a stable ``str``).
        using: The database alias (where the database-backed guards live).
    """
    limit = max_turns_per_user()
    if limit <= 0:
        yield True
        return
    for slot in range(limit):
        async with turn_guard(_slot_key(user_key), f"slot:{slot}", using=using) as acquired:
            if acquired:
                yield True
                return
    yield False
