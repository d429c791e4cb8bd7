"""``manage.py seed_demo``: realistic demo conversations (``dashboard.demo.seed``).

Idempotent: a session that already exists is skipped, and so are the review demo data
(score definitions, two reviewers who cannot log in, their annotations and review statuses)
of a session that already has annotations or a status. With ``DEBUG`` on (and no
``--no-user``), a ``demo`` reviewer account that may browse, chat and annotate is created (or
its permissions refreshed) and its dev-only password printed.
"""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from dashboard.demo.seed import SEEDS, demo_reviewer, seed_reviews, seed_sessions


class Command(BaseCommand):
    help = "Create demo conversations (idempotent) and, in DEBUG, a demo reviewer account."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--no-user", action="store_true", help="Do not create the demo user.")

    def handle(self, *args: Any, **options: Any) -> None:
        started = datetime.now(tz=UTC)
        created = seed_sessions()
        for sid in SEEDS:
            verb = "created" if sid in created else "exists, skipped"
            self.stdout.write(f"  {sid}: {verb}")
        annotated, refused = seed_reviews()
        self.stdout.write(
            f"  review demo data: {len(annotated)} session(s) annotated"
            + ("" if annotated else " (already present)")
        )
        for line in refused:
            self.stdout.write(self.style.WARNING(f"  not annotated: {line}"))
        seconds = (datetime.now(tz=UTC) - started).total_seconds()
        self.stdout.write(
            self.style.SUCCESS(f"Demo sessions ready ({len(created)} new, {seconds:.1f}s).")
        )
        if settings.DEBUG and not options["no_user"]:
            self._demo_user()

    def _demo_user(self) -> None:
        """A dev-only reviewer. Never created when DEBUG is off."""
        username, password = demo_reviewer()
        if password is None:
            # Re-running changes nothing: the password printed the first time still works.
            self.stdout.write(
                f"Demo reviewer '{username}' exists (password unchanged; "
                f"reset it with: manage.py changepassword {username})."
            )
            return
        self.stdout.write(
            f"Demo reviewer (DEBUG only): username '{username}', password '{password}'"
        )
