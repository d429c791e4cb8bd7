"""``manage.py import_agents_db PATH``: copy an SDK SQLite file into Forkview's database.

All or nothing per file: the first session that cannot be imported stops the command with one
line naming it and its row, and nothing of the file is written. ``--skip-bad-sessions``
imports the others and lists the skipped ones and why. Rows the SDK itself would skip
(undecodable JSON, structure rows pointing nowhere) are left out and listed, not fatal.

Memory does not grow with the file: its sessions are read, checked and written one at a time
inside the one transaction (``exchange.sdk_file_trees``), and on SQLite the transaction's
changed pages spill to the WAL once :data:`IMPORT_CACHE_KIB` of them are cached.

Exit codes (as every Forkview command): 0 done, 1 an error (nothing written), 2 a usage error.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from conversations.exchange import ImportReport, SDKFile, TreeError, sdk_file_trees, tree_import

#: SQLite's page cache during an import (KiB). The whole file is one transaction, whose changed
#: pages stay in the cache until it is full: with the 64 MB of ``dashboard.settings`` a big
#: import grew the heap by up to 64 MB (+40 MB at 2,000 sessions); with 8 MB it is as fast
#: (measured: 30.6 s against 32.4 s for those 2,000 sessions).
IMPORT_CACHE_KIB = 8192


class Progress:
    """A one-line progress bar on stderr (only on a terminal, and only for big files)."""

    def __init__(self, stream: Any, total: int, enabled: bool, width: int = 30) -> None:
        self.stream, self.total, self.width, self.done = stream, total, width, 0
        self.enabled = enabled and total > 0

    def advance(self, n: int, label: str) -> None:
        self.done += n
        if not self.enabled:
            return
        filled = int(self.width * self.done / self.total) if self.total else self.width
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} messages  {label[:40]:<40}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")


@contextmanager
def _small_page_cache(using: str) -> Iterator[None]:
    """SQLite: :data:`IMPORT_CACHE_KIB` of page cache for the block, then the previous size."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size")
        (previous,) = cursor.fetchone()
        cursor.execute(f"PRAGMA cache_size = -{int(IMPORT_CACHE_KIB)}")
    try:
        yield
    finally:
        if connection.connection is not None:
            with connection.cursor() as cursor:
                cursor.execute(f"PRAGMA cache_size = {int(previous)}")


class Command(BaseCommand):
    help = (
        "Import sessions from a SQLite file written by the Agents SDK's SQLiteSession or "
        "AdvancedSQLiteSession (read-only; idempotent: sessions already present with "
        "identical content are skipped)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("path", help="The SDK's SQLite database file.")
        parser.add_argument(
            "--session",
            action="append",
            dest="sessions",
            metavar="ID",
            help="Import only this session (repeatable). Default: every session.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Report only; write nothing.")
        parser.add_argument(
            "--skip-bad-sessions",
            action="store_true",
            help="Import the sessions that can be imported; list the others and why "
            "(default: one bad session stops the import and nothing is written).",
        )
        parser.add_argument("--sessions-table", default="agent_sessions")
        parser.add_argument("--messages-table", default="agent_messages")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)
        parser.add_argument(
            "--progress",
            choices=["auto", "always", "never"],
            default="auto",
            help="Progress bar on stderr: auto = on a terminal for files over 1,000 messages.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        using = options["database"]
        try:
            source = SDKFile.open(
                options["path"], options["sessions_table"], options["messages_table"]
            )
        except Exception as exc:  # sqlite3 errors, missing tables, bad names
            raise CommandError(f"Cannot read {options['path']}: {exc}") from exc
        report = ImportReport()
        try:
            with _small_page_cache(using), transaction.atomic(using=using):
                self._import(source, options, report)
        except sqlite3.Error as exc:
            raise CommandError(
                f"Cannot read {options['path']}: {exc}; nothing was imported"
            ) from exc
        finally:
            source.conn.close()
        self._print_report(report, options["dry_run"])

    def _import(self, source: SDKFile, options: dict[str, Any], report: ImportReport) -> None:
        """Every requested session, inside the caller's transaction (all or nothing)."""
        using = options["database"]
        vendor = connections[using].vendor
        for note in source.notes:
            self.stderr.write(note)
        kind = "AdvancedSQLiteSession" if source.advanced else "SQLiteSession"
        self.stdout.write(f"Reading {options['path']} ({kind} tables)")
        if not options["sessions"]:
            report.skipped_rows += source.orphan_reports()
        total = source.message_count()
        mode = options["progress"]
        enabled = mode == "always" or (
            mode == "auto" and total > 1000 and getattr(sys.stderr, "isatty", bool)()
        )
        progress = Progress(self.stderr._out, total, enabled)
        for tree in sdk_file_trees(source, options["sessions"], report, vendor):
            try:
                tree_import(tree=tree, using=using, dry_run=options["dry_run"], report=report)
            except TreeError as exc:
                if not options["skip_bad_sessions"]:
                    progress.close()
                    raise CommandError(
                        f"{exc}. Nothing was imported (--skip-bad-sessions imports the rest)."
                    ) from exc
                report.bad_sessions.append((tree["session"]["session_id"], str(exc)))
            progress.advance(len(tree["messages"]), str(tree["session"]["session_id"]))
        progress.close()

    def _print_report(self, report: ImportReport, dry_run: bool) -> None:
        verb = "Would import" if dry_run else "Imported"
        self.stdout.write(f"{verb} {len(report.imported)} session(s)")
        for key, n in sorted(report.counts.items()):
            self.stdout.write(f"  {n} {key}")
        if report.unchanged:
            self.stdout.write(
                f"Skipped {len(report.unchanged)} session(s) already present and identical"
            )
        for session_id, reason in report.conflicts:
            self.stdout.write(self.style.WARNING(f"Skipped session {session_id!r}: {reason}"))
        for session_id, reason in report.bad_sessions:
            self.stdout.write(self.style.WARNING(f"Skipped session {session_id!r}: {reason}"))
        if report.skipped_rows:
            self.stdout.write(self.style.WARNING(f"Skipped {len(report.skipped_rows)} row(s):"))
            for line in report.skipped_rows:
                self.stdout.write(f"  - {line}")
