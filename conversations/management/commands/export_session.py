"""``manage.py export_session ID``: a session as a JSON tree, JSONL items or Markdown.

Written as it is read (``exchange.export_chunks``: one snapshot, rows a few hundred at a
time), so memory stays flat whatever the session's size.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS

from conversations.exchange import FORMATS, export_chunks
from conversations.models import MAIN_BRANCH, AgentSession


class Command(BaseCommand):
    help = (
        "Export a session: json = the whole tree (lossless, read back by import_session); "
        "jsonl = one branch's items, one per line; markdown = one branch's transcript."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("session_id")
        parser.add_argument("--format", choices=FORMATS, default="json")
        parser.add_argument("--branch", default=MAIN_BRANCH, help="For jsonl and markdown.")
        parser.add_argument("--output", "-o", help="Write to this file (default: stdout).")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args: Any, **options: Any) -> None:
        chunks = export_chunks(
            session_id=options["session_id"],
            fmt=options["format"],
            branch_id=options["branch"],
            using=options["database"],
        )
        try:
            first = next(chunks, "")  # a missing session fails here, before any output
        except AgentSession.DoesNotExist as exc:
            raise CommandError(f"Session {options['session_id']!r} does not exist") from exc
        path = options["output"]
        if not path:
            self.stdout.write(first, ending="")
            for chunk in chunks:
                self.stdout.write(chunk, ending="")
            return
        try:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(first)
                handle.writelines(chunks)
        except BaseException:
            # A read that failed half-way leaves no half file behind.
            if os.path.isfile(path):
                os.unlink(path)
            raise
