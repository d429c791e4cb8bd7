"""``forkview start``: the container entrypoint (and any process manager's start command).

Waits for the database (a fresh PostgreSQL container takes a few seconds to accept
connections), applies migrations, then becomes ``forkview serve`` with the same options.
Several instances starting together are safe: Django applies each migration in a transaction
on PostgreSQL, and an instance that finds them applied does nothing.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections

from .serve import Command as Serve


class Command(BaseCommand):
    help = "Wait for the database, migrate, then serve (the options of serve)."

    def add_arguments(self, parser: Any) -> None:
        Serve().add_arguments(parser)
        parser.add_argument(
            "--wait",
            type=float,
            default=60.0,
            help="Seconds to wait for the database before giving up (default 60).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        deadline = time.monotonic() + options["wait"]
        while True:
            try:
                connections["default"].ensure_connection()
                break
            except DatabaseError as exc:
                if time.monotonic() > deadline:
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise CommandError(f"The database did not answer: {first}") from exc
                time.sleep(1)
        call_command("migrate", interactive=False, verbosity=1, stdout=self.stdout)
        connections.close_all()  # serve replaces this process
        serve = {k: options[k] for k in ("host", "port", "workers", "forwarded_allow_ips")}
        call_command("serve", no_collectstatic=options["no_collectstatic"], **serve)
