"""SQLite files the Agents SDK wrote, read (never written) as session trees.

A file of ``SQLiteSession`` holds a sessions table and a messages table (names configurable);
one of ``AdvancedSQLiteSession`` also has ``message_structure`` and ``turn_usage`` (and, from
Forkview-compatible writers, ``branch_reservations`` and ``session_clear_generations``).
Plain data gets ``main`` structure rows numbered exactly as ``add_items`` numbers them. Every
row that cannot be kept (undecodable JSON, a structure row pointing nowhere, an orphan) is
reported in the :class:`~.tree.ImportReport`, never silently dropped.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .. import classify, items
from ..models import MAIN_BRANCH
from .tree import TREE_FORMAT, TREE_VERSION, ImportReport

__all__ = ["SDKFile", "open_sqlite_readonly", "sdk_file_trees"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _quoted(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"Invalid table name {name!r}")
    return f'"{name}"'


def _date(value: Any) -> Any:
    """A stored ``created_at`` as ISO 8601; a value that is not a readable date is passed on
    as stored, so the importer's check names it (an unreadable date is an import error)."""
    if isinstance(value, str) and items.parse_timestamp(value) is not None:
        return items.iso_timestamp(value)
    return value


def open_sqlite_readonly(path: str) -> sqlite3.Connection:
    """Open an SDK file read-only (``mode=ro``): the import never writes to its source."""
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    conn.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
    return conn


@dataclass
class SDKFile:
    """An SDK SQLite file and the table pair it is read through."""

    conn: sqlite3.Connection
    sessions_table: str = "agent_sessions"
    messages_table: str = "agent_messages"
    #: Whether the file's structure tables belong to this messages table.
    advanced: bool = False
    has_reservations: bool = False
    has_generations: bool = False
    #: Why the file is read the way it is (printed by the command).
    notes: list[str] = field(default_factory=list)
    #: Whether the last session's structure rows were derived (plain data).
    _derived: bool = False

    @classmethod
    def open(
        cls,
        path: str,
        sessions_table: str = "agent_sessions",
        messages_table: str = "agent_messages",
    ) -> SDKFile:
        """Open ``path`` read-only and see which of the SDK's tables it has.

        Raises:
            ValueError: A table name that is not an identifier, or a table that is missing.
            sqlite3.Error: The file is not an SQLite database.
        """
        conn = open_sqlite_readonly(path)
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        for table in (sessions_table, messages_table):
            _quoted(table)
            if table not in tables:
                conn.close()
                raise ValueError(f"Table {table!r} not found in {path}")
        source = cls(conn, sessions_table, messages_table)
        if {"message_structure", "turn_usage"} <= tables:
            targets = {row[2] for row in conn.execute("PRAGMA foreign_key_list(message_structure)")}
            if messages_table in targets or not targets:
                source.advanced = True
            else:
                source.notes.append(
                    f"The file's structure tables belong to {sorted(targets)}, not "
                    f"{messages_table!r}: read as plain SQLiteSession data."
                )
        source.has_reservations = "branch_reservations" in tables
        source.has_generations = "session_clear_generations" in tables
        return source

    def session_ids(self) -> list[str]:
        return list(self.iter_session_ids())

    def iter_session_ids(self) -> Iterator[str]:
        """Every session id in order, read a thousand at a time (not all held at once)."""
        cursor = self.conn.execute(
            f"SELECT session_id FROM {_quoted(self.sessions_table)} ORDER BY session_id"
        )
        try:
            while rows := cursor.fetchmany(1000):
                for (session_id,) in rows:
                    yield session_id
        finally:
            cursor.close()

    def has_session(self, session_id: str) -> bool:
        sql = f"SELECT 1 FROM {_quoted(self.sessions_table)} WHERE session_id = ?"
        return self.conn.execute(sql, [session_id]).fetchone() is not None

    def message_count(self) -> int:
        """Every message row of the file (the progress bar's total)."""
        sql = f"SELECT COUNT(*) FROM {_quoted(self.messages_table)}"
        count: int = self.conn.execute(sql).fetchone()[0]
        return count

    def orphan_reports(self) -> list[str]:
        """Rows whose session has no row in the sessions table (never imported)."""
        st, mt = _quoted(self.sessions_table), _quoted(self.messages_table)
        reports = []
        missing = f"NOT IN (SELECT session_id FROM {st})"
        for sid, n in self.conn.execute(
            f"SELECT session_id, COUNT(*) FROM {mt} WHERE session_id {missing} GROUP BY session_id"
        ):
            reports.append(f"{n} message row(s) of session {sid!r}: orphan (no session row)")
        if self.advanced:
            for table in ("message_structure", "turn_usage"):
                for sid, n in self.conn.execute(
                    f"SELECT session_id, COUNT(*) FROM {table} WHERE session_id {missing} "
                    "GROUP BY session_id"
                ):
                    reports.append(
                        f"{n} {table} row(s) of session {sid!r}: orphan (no session row)"
                    )
        return reports

    def tree(self, session_id: str, report: ImportReport, vendor: str) -> dict[str, Any]:
        """One session of the file as a tree; rows that cannot be kept go to ``report``."""
        st, mt = _quoted(self.sessions_table), _quoted(self.messages_table)
        created_at, updated_at = self.conn.execute(
            f"SELECT created_at, updated_at FROM {st} WHERE session_id = ?", [session_id]
        ).fetchone()
        messages: list[dict[str, Any]] = []
        refs: dict[int, int] = {}
        for message_id, data, m_created in self.conn.execute(
            f"SELECT id, message_data, created_at FROM {mt} WHERE session_id = ? ORDER BY id",
            [session_id],
        ):
            where = f"session {session_id!r}, {self.messages_table} id {message_id}"
            try:
                item = items.decode(data)
            except items.DecodeError:
                report.skipped_rows.append(f"{where}: undecodable JSON")
                continue
            if vendor == "postgresql" and "\\u0000" in json.dumps(item):
                report.skipped_rows.append(
                    f"{where}: contains \\u0000, which PostgreSQL's jsonb cannot store"
                )
                continue
            refs[message_id] = len(messages) + 1
            messages.append(
                {
                    "ref": refs[message_id],
                    "created_at": _date(m_created),
                    "item": item,
                }
            )
        structure = self._structure(session_id, refs, messages, report)
        usage = self._usage(session_id, report) if self.advanced else []
        reservations: list[str] = []
        if self.advanced and self.has_reservations:
            reservations = sorted(
                row[0]
                for row in self.conn.execute(
                    "SELECT branch_id FROM branch_reservations WHERE session_id = ?", [session_id]
                )
            )
        generation = None
        if self.advanced and self.has_generations:
            row = self.conn.execute(
                "SELECT generation FROM session_clear_generations WHERE session_id = ?",
                [session_id],
            ).fetchone()
            generation = row[0] if row else None
        if self._derived and structure and MAIN_BRANCH not in reservations:
            # add_items would have reserved main when it wrote these rows.
            reservations = sorted([*reservations, MAIN_BRANCH])
        return {
            "format": TREE_FORMAT,
            "version": TREE_VERSION,
            "session": {
                "session_id": session_id,
                "created_at": _date(created_at),
                "updated_at": _date(updated_at),
            },
            "clear_generation": generation,
            "reservations": reservations,
            "messages": messages,
            "structure": structure,
            "usage": usage,
        }

    def _structure(
        self,
        session_id: str,
        refs: dict[int, int],
        messages: list[dict[str, Any]],
        report: ImportReport,
    ) -> list[dict[str, Any]]:
        self._derived = not self.advanced
        if not self.advanced:
            return _derived_structure(messages)
        rows = []
        for row_id, message_id, branch, mtype, seq, turn, bturn, tool, created in self.conn.execute(
            "SELECT id, message_id, branch_id, message_type, sequence_number, "
            "user_turn_number, branch_turn_number, tool_name, created_at "
            "FROM message_structure WHERE session_id = ? ORDER BY sequence_number, id",
            [session_id],
        ):
            if message_id not in refs:
                report.skipped_rows.append(
                    f"session {session_id!r}, message_structure id {row_id}: points to "
                    f"message {message_id}, which is missing, skipped or of another session"
                )
                continue
            rows.append(
                {
                    "message": refs[message_id],
                    "branch_id": branch,
                    "message_type": mtype,
                    "sequence_number": seq,
                    "user_turn_number": turn,
                    "branch_turn_number": bturn,
                    "tool_name": tool,
                    "created_at": _date(created),
                }
            )
        referenced = {row["message"] for row in rows}
        if not rows and messages:
            # Written by SQLiteSession into a file that also has the Advanced tables.
            self._derived = True
            return _derived_structure(messages)
        unplaced = [m for m in messages if m["ref"] not in referenced]
        if unplaced:
            report.skipped_rows.append(
                f"session {session_id!r}: {len(unplaced)} message(s) on no branch "
                "(imported as stored; the SDK never shows them)"
            )
        return rows

    def _usage(self, session_id: str, report: ImportReport) -> list[dict[str, Any]]:
        usage = []
        for (
            row_id,
            branch,
            turn,
            requests,
            inp,
            out,
            total,
            in_details,
            out_details,
            created,
        ) in self.conn.execute(
            "SELECT id, branch_id, user_turn_number, requests, input_tokens, output_tokens, "
            "total_tokens, input_tokens_details, output_tokens_details, created_at "
            "FROM turn_usage WHERE session_id = ? ORDER BY branch_id, user_turn_number",
            [session_id],
        ):
            entry = {
                "branch_id": branch,
                "user_turn_number": turn,
                "requests": requests,
                "input_tokens": inp,
                "output_tokens": out,
                "total_tokens": total,
                "input_tokens_details": None,
                "output_tokens_details": None,
                "created_at": _date(created),
            }
            for key, text in (
                ("input_tokens_details", in_details),
                ("output_tokens_details", out_details),
            ):
                if text is None:
                    continue
                try:
                    entry[key] = items.decode(text)
                except items.DecodeError:
                    report.skipped_rows.append(
                        f"session {session_id!r}, turn_usage id {row_id}: {key} is undecodable "
                        "JSON; stored as NULL"
                    )
            usage.append(entry)
        return usage


def _derived_structure(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``main`` rows numbered exactly as ``add_items`` numbers one batch on a fresh branch."""
    rows, opened = [], 0
    for seq, message in enumerate(messages, 1):
        lab = classify.label(message["item"])
        opened += lab.is_user
        rows.append(
            {
                "message": message["ref"],
                "branch_id": MAIN_BRANCH,
                "message_type": lab.message_type,
                "sequence_number": seq,
                "user_turn_number": opened,
                "branch_turn_number": opened,
                "tool_name": lab.tool_name,
                "created_at": message["created_at"],
            }
        )
    return rows


def sdk_file_trees(
    source: SDKFile, session_ids: list[str] | None, report: ImportReport, vendor: str
) -> Iterator[dict[str, Any]]:
    """The trees of the requested sessions (all by default), one at a time: a whole file is
    never held in memory. Unknown ids are reported."""
    if not session_ids:
        for session_id in source.iter_session_ids():
            yield source.tree(session_id, report, vendor)
        return
    for session_id in session_ids:
        if not source.has_session(session_id):
            report.conflicts.append((session_id, "not in the source file"))
            continue
        yield source.tree(session_id, report, vendor)
