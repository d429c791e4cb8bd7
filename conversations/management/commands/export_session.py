"""``manage.py export_session ID``: a session as a JSON tree, JSONL items or Markdown."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS

from conversations.exchange import FORMATS, export_text
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
        try:
            text = export_text(
                session_id=options["session_id"],
                fmt=options["format"],
                branch_id=options["branch"],
                using=options["database"],
            )
        except AgentSession.DoesNotExist as exc:
            raise CommandError(f"Session {options['session_id']!r} does not exist") from exc
        if options["output"]:
            with open(options["output"], "w", encoding="utf-8") as handle:
                handle.write(text)
        else:
            self.stdout.write(text, ending="")
