"""``manage.py import_session FILE``: read back a tree written by ``export_session``.

Exit codes (as every Forkview command): 0 done, 1 an error (one line on stderr, nothing
written), 2 a usage error (bad arguments).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS

from conversations.exchange import TreeError, tree_import


class Command(BaseCommand):
    help = "Import a session tree (export_session --format json). Idempotent."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", help="The JSON tree, or - for stdin.")
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["file"] == "-":
                tree = json.load(sys.stdin)
            else:
                with open(options["file"], encoding="utf-8") as handle:
                    tree = json.load(handle)
        except (OSError, ValueError) as exc:  # ValueError: bad JSON or bytes that are not UTF-8
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CommandError(f"Cannot read {options['file']}: {reason}") from exc
        except RecursionError as exc:
            raise CommandError(f"Cannot read {options['file']}: JSON nested too deeply") from exc
        try:
            report = tree_import(tree=tree, using=options["database"], dry_run=options["dry_run"])
        except TreeError as exc:
            raise CommandError(str(exc)) from exc
        for session_id in report.imported:
            verb = "Would import" if options["dry_run"] else "Imported"
            self.stdout.write(f"{verb} session {session_id!r}")
        for session_id in report.unchanged:
            self.stdout.write(f"Session {session_id!r} already present and identical: unchanged")
        for session_id, reason in report.conflicts:
            raise CommandError(f"Session {session_id!r} {reason}")
