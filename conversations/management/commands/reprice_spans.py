"""``manage.py reprice_spans``: price every recorded model call again.

A model span's cost is recorded when the span is written, with the prices of that day
(``genai-prices``' bundled table, ``FORKVIEW_PRICES``). After changing ``FORKVIEW_PRICES`` or
upgrading ``genai-prices``, this applies the new prices to what was recorded; the session
list's costs follow (database triggers). Batches of spans, one transaction each: safe to run
while Forkview serves and records.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import DEFAULT_DB_ALIAS

from conversations.costs import reprice_spans


class Command(BaseCommand):
    help = "Price every recorded model call (span) again with today's prices and settings."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)
        parser.add_argument("--batch", type=int, default=500, help="Spans per transaction.")

    def handle(self, *args: Any, **options: Any) -> None:
        checked, changed = reprice_spans(using=options["database"], batch=max(1, options["batch"]))
        if options["verbosity"]:
            self.stdout.write(f"Checked {checked} model calls; {changed} now cost differently.")
