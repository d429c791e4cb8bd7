"""``manage.py rollup_insights``: roll up the past days of ``/insights/`` ahead of time.

The page rolls up a past day the first time a view needs it (``dashboard/insights/rollup.py``),
so the first view of a long range pays for every day it has not seen (seconds for a year at
100,000 sessions). Run this after an import or on a schedule (e.g. nightly) and every view is
a read of stored days. Days already rolled up are left alone; the last two days are always
computed live and never stored.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from dashboard.insights import rollup
from dashboard.insights.views import MAX_DAYS

#: Days rolled up per query (each chunk is one read plus one write).
CHUNK = 31


class Command(BaseCommand):
    help = "Roll up the past days of the insights page (missing days only)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--days", type=int, default=MAX_DAYS, help=f"How far back (default {MAX_DAYS})."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"]
        if not 1 <= days <= 10 * MAX_DAYS:
            raise CommandError(f"--days must be between 1 and {10 * MAX_DAYS}")
        today = timezone.now().date()
        last = today - timedelta(days=rollup.LIVE_DAYS)
        start = today - timedelta(days=days - 1)
        before = self._stored()
        day = start
        while day <= last:
            end = min(day + timedelta(days=CHUNK - 1), last)
            rollup.rows(day, end, today)
            day = end + timedelta(days=1)
        added = self._stored() - before
        if options["verbosity"]:
            self.stdout.write(
                f"Rolled up {added} day{'s' if added != 1 else ''} "
                f"({start.isoformat()} to {last.isoformat()}; the rest were already stored)."
            )

    def _stored(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {rollup.TABLE} WHERE kind = 'day'")
            (count,) = cursor.fetchone()
        return int(count)
