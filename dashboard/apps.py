from __future__ import annotations

import os
import sys

from django.apps import AppConfig


def _forget_inherited_database_connections() -> None:
    """In a forked child: drop the parent's database connections without closing them.

    A pooled connection (``FORKVIEW_DB_POOL_SIZE``) is a socket shared with the parent after
    ``fork``: the child taking it from the inherited pool would interleave its queries with
    the parent's on one socket, and both hang or read each other's results (seen with the
    forked daphne of ``ChannelsLiveServerTestCase``; any pre-forking server would do the same).
    The child forgets the pools and this thread's connections, and opens its own; the
    sockets stay the parent's (closing them here would end the parent's sessions).
    """
    from django.db import connections

    postgresql = sys.modules.get("django.db.backends.postgresql.base")  # loaded if in use
    if postgresql is not None:
        pools: dict[str, object] = postgresql.DatabaseWrapper._connection_pools
        pools.clear()
    for connection in connections.all(initialized_only=True):
        connection.connection = None
        connection.closed_in_transaction = False
        connection.in_atomic_block = False
        connection.savepoint_ids = []
        connection.needs_rollback = False


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Dashboard"

    def ready(self) -> None:
        os.register_at_fork(after_in_child=_forget_inherited_database_connections)
