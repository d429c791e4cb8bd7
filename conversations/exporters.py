"""Whole conversation trees in and out: JSON (lossless), JSONL (one branch) and Markdown.

The JSON *tree* is the one exchange format: ``export_session --format json`` writes it,
``import_session`` reads it back, and ``import_agents_db`` converts every session of an SDK
SQLite file into a tree before writing it through the same :func:`tree_import`.

Identity and losslessness: a tree holds every column of every row of the session, except
the database-local surrogate ids (message, structure and usage row ids). Messages are
numbered ``ref`` 1..n in id order and structure rows point at those refs, so the same
session exports to the same bytes from any database, and export -> import into an empty
database -> export is byte-identical. Timestamps are ISO 8601 in UTC.

Forkview's own mark on a session travels too: ``preferred_branch`` (the branch the review
pages open on) is present only when the session has one, so trees of unmarked sessions are
the same bytes as before the key existed. Who marked it and when stay behind.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from django.db import connections, transaction
from django.utils.dateparse import parse_datetime

from . import classify
from .fields import RawJSON, UndecodableJSON
from .models import (
    MAIN_BRANCH,
    AgentMessage,
    AgentSession,
    BranchReservation,
    MessageStructure,
    PreferredBranch,
    SessionClearGeneration,
    TurnUsage,
)
from .sql import statements

TREE_FORMAT = "forkview.session-tree"
TREE_VERSION = 1
FORMATS = ("json", "jsonl", "markdown")
CONTENT_TYPES = {
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "markdown": "text/markdown; charset=utf-8",
}
EXTENSIONS = {"json": "json", "jsonl": "jsonl", "markdown": "md"}


class TreeError(ValueError):
    """A tree file that cannot be imported (wrong format, inconsistent rows)."""


# ---- Timestamps and JSON cells ---------------------------------------------------------


def _ts_out(value: datetime | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = _ts_parse(value)
        if value is None:
            return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _ts_parse(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = parse_datetime(str(value))
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _json_cell(value: Any) -> tuple[Any, str | None]:
    """(decoded value, undecodable raw text) of a JSON column as the ORM read it."""
    if isinstance(value, UndecodableJSON):
        return None, str(value)
    return value, None


def _json_in(value: Any, raw: str | None) -> RawJSON | None:
    if raw is not None:
        return RawJSON(raw)
    if value is None:
        return None
    return RawJSON(json.dumps(value))


# ---- Export ----------------------------------------------------------------------------


def tree_export(*, session_id: str, using: str = "default") -> dict[str, Any]:
    """The whole session as a JSON-ready dict (see the module docstring).

    Raises:
        AgentSession.DoesNotExist: No such session.
    """
    session = AgentSession.objects.using(using).get(pk=session_id)
    messages = list(AgentMessage.objects.using(using).filter(session_id=session_id).order_by("id"))
    refs = {m.id: n for n, m in enumerate(messages, 1)}
    out_messages = []
    for message in messages:
        item, raw = _json_cell(message.message_data)
        entry: dict[str, Any] = {
            "ref": refs[message.id],
            "created_at": _ts_out(message.created_at),
            "item": item,
        }
        if raw is not None:
            entry["undecodable"] = raw
        out_messages.append(entry)
    structure = [
        {
            "message": refs[row.message_id],
            "branch_id": row.branch_id,
            "message_type": row.message_type,
            "sequence_number": row.sequence_number,
            "user_turn_number": row.user_turn_number,
            "branch_turn_number": row.branch_turn_number,
            "tool_name": row.tool_name,
            "created_at": _ts_out(row.created_at),
        }
        for row in MessageStructure.objects.using(using)
        .filter(session_id=session_id)
        .order_by("sequence_number", "id")
        if row.message_id in refs
    ]
    usage = []
    for row in (
        TurnUsage.objects.using(using)
        .filter(session_id=session_id)
        .order_by("branch_id", "user_turn_number")
    ):
        input_details, input_raw = _json_cell(row.input_tokens_details)
        output_details, output_raw = _json_cell(row.output_tokens_details)
        entry = {
            "branch_id": row.branch_id,
            "user_turn_number": row.user_turn_number,
            "requests": row.requests,
            "input_tokens": row.input_tokens,
            "output_tokens": row.output_tokens,
            "total_tokens": row.total_tokens,
            "input_tokens_details": input_details,
            "output_tokens_details": output_details,
            "created_at": _ts_out(row.created_at),
        }
        if input_raw is not None:
            entry["input_tokens_details_undecodable"] = input_raw
        if output_raw is not None:
            entry["output_tokens_details_undecodable"] = output_raw
        usage.append(entry)
    reservations = sorted(
        BranchReservation.objects.using(using)
        .filter(session_id=session_id)
        .values_list("branch_id", flat=True)
    )
    generation = (
        SessionClearGeneration.objects.using(using)
        .filter(session_id=session_id)
        .values_list("generation", flat=True)
        .first()
    )
    tree = {
        "format": TREE_FORMAT,
        "version": TREE_VERSION,
        "session": {
            "session_id": session.session_id,
            "created_at": _ts_out(session.created_at),
            "updated_at": _ts_out(session.updated_at),
        },
        "clear_generation": generation,
        "reservations": reservations,
        "messages": out_messages,
        "structure": structure,
        "usage": usage,
    }
    preferred = (
        PreferredBranch.objects.using(using)
        .filter(session_id=session_id)
        .values_list("branch_id", flat=True)
        .first()
    )
    if preferred is not None:
        tree["preferred_branch"] = preferred
    return tree


def tree_dumps(tree: dict[str, Any]) -> str:
    """The canonical text of a tree (stable, so identical sessions give identical bytes)."""
    return json.dumps(tree, indent=2, ensure_ascii=False) + "\n"


def branch_items(*, session_id: str, branch_id: str = MAIN_BRANCH, using: str = "default") -> list:
    """A branch's decodable items in sequence order (what ``get_items`` returns)."""
    rows = (
        MessageStructure.objects.using(using)
        .filter(session_id=session_id, branch_id=branch_id)
        .order_by("sequence_number")
        .values_list("message__message_data", flat=True)
    )
    return [item for item in rows if not isinstance(item, UndecodableJSON) and item is not None]


def jsonl_export(*, session_id: str, branch_id: str = MAIN_BRANCH, using: str = "default") -> str:
    """One item per line, ready for ``session.add_items([json.loads(line) for line in ...])``.

    Plain ``SQLiteSession`` data (no structure rows) exports its messages in id order.
    """
    AgentSession.objects.using(using).get(pk=session_id)
    items = branch_items(session_id=session_id, branch_id=branch_id, using=using)
    if not items and not MessageStructure.objects.using(using).filter(session_id=session_id):
        items = [
            m
            for m in AgentMessage.objects.using(using)
            .filter(session_id=session_id)
            .order_by("id")
            .values_list("message_data", flat=True)
            if not isinstance(m, UndecodableJSON)
        ]
    return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    parts.append(part["text"])
                elif isinstance(part.get("refusal"), str):
                    parts.append(f"(refusal) {part['refusal']}")
                else:
                    parts.append(f"[{part.get('type', 'part')}]")
        return "\n\n".join(parts)
    return "" if content is None else json.dumps(content, ensure_ascii=False)


def _fenced(text: str, lang: str = "") -> str:
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def _pretty_arguments(arguments: Any) -> tuple[str, str]:
    if isinstance(arguments, str):
        try:
            return json.dumps(json.loads(arguments), indent=2, ensure_ascii=False), "json"
        except (json.JSONDecodeError, RecursionError):
            return arguments, ""
    return json.dumps(arguments, indent=2, ensure_ascii=False), "json"


def _markdown_item(item: Any) -> str:
    if not isinstance(item, dict):
        return _fenced(json.dumps(item, indent=2, ensure_ascii=False), "json")
    role = item.get("role")
    item_type = item.get("type")
    if role in ("user", "assistant", "system", "developer"):
        return f"**{role.capitalize()}:**\n\n{_text_of(item.get('content'))}"
    if item_type == "function_call":
        args, lang = _pretty_arguments(item.get("arguments"))
        name = classify.tool_name(item) or "?"
        return f"**Tool call** `{name}` (call `{item.get('call_id')}`):\n\n{_fenced(args, lang)}"
    if item_type == "function_call_output":
        output = item.get("output")
        text = output if isinstance(output, str) else _text_of(output)
        return f"**Tool output** (call `{item.get('call_id')}`):\n\n{_fenced(text)}"
    if item_type == "reasoning":
        summary = _text_of(item.get("summary") or [])
        return f"**Reasoning:**\n\n{summary or '(no summary)'}"
    label = classify.tool_name(item)
    title = f"**{item_type or 'Item'}**" + (f" `{label}`" if label else "")
    return f"{title}:\n\n{_fenced(json.dumps(item, indent=2, ensure_ascii=False), 'json')}"


def markdown_export(
    *, session_id: str, branch_id: str = MAIN_BRANCH, using: str = "default"
) -> str:
    """A readable transcript of one branch: text, tool calls and outputs, usage per turn."""
    session = AgentSession.objects.using(using).get(pk=session_id)
    rows = (
        MessageStructure.objects.using(using)
        .filter(session_id=session_id, branch_id=branch_id)
        .order_by("sequence_number")
        .values_list("user_turn_number", "message__message_data")
    )
    usage = {
        u.user_turn_number: u
        for u in TurnUsage.objects.using(using).filter(session_id=session_id, branch_id=branch_id)
    }
    lines = [f"# Session {session.session_id}", "", f"Branch: `{branch_id}`"]
    if session.created_at:
        lines.append(f"Started: {_ts_out(session.created_at)}")
    lines.append("")
    started, current = False, None

    def close_turn(turn: int | None) -> None:
        u = usage.get(turn)
        if u is not None:
            lines.append(
                f"_Usage: {u.requests} request(s), {u.input_tokens} input + "
                f"{u.output_tokens} output = {u.total_tokens} tokens_"
            )
            lines.append("")

    for turn, item in rows:
        if not started or turn != current:
            if started:
                close_turn(current)
            started, current = True, turn
            heading = "Before the first user message" if not turn else f"Turn {turn}"
            lines += [f"## {heading}", ""]
        if isinstance(item, UndecodableJSON):
            lines += ["_(an item whose stored JSON does not decode)_", ""]
            continue
        lines += [_markdown_item(item), ""]
    if started:
        close_turn(current)
    if not started:
        lines += ["_No items on this branch._", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def export_text(
    *, session_id: str, fmt: str, branch_id: str = MAIN_BRANCH, using: str = "default"
) -> str:
    """The session in one of :data:`FORMATS` (the tree ignores ``branch_id``)."""
    if fmt == "json":
        return tree_dumps(tree_export(session_id=session_id, using=using))
    if fmt == "jsonl":
        return jsonl_export(session_id=session_id, branch_id=branch_id, using=using)
    if fmt == "markdown":
        return markdown_export(session_id=session_id, branch_id=branch_id, using=using)
    raise ValueError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


# ---- Import ----------------------------------------------------------------------------


@dataclass
class ImportReport:
    """What an import did, and every row it left out with the reason."""

    imported: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    conflicts: list[tuple[str, str]] = field(default_factory=list)
    skipped_rows: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


def _validate_tree(tree: Any) -> None:
    if not isinstance(tree, dict) or tree.get("format") != TREE_FORMAT:
        raise TreeError(f"Not a Forkview session tree (expected format {TREE_FORMAT!r}).")
    if tree.get("version") != TREE_VERSION:
        raise TreeError(f"Unsupported tree version {tree.get('version')!r}.")
    session = tree.get("session")
    if not isinstance(session, dict) or not isinstance(session.get("session_id"), str):
        raise TreeError("The tree has no session id.")
    refs = [m.get("ref") for m in tree.get("messages", [])]
    if len(set(refs)) != len(refs):
        raise TreeError("Message refs are not unique.")
    known = set(refs)
    for row in tree.get("structure", []):
        if row.get("message") not in known:
            raise TreeError(f"A structure row points at unknown message ref {row.get('message')}.")
    preferred = tree.get("preferred_branch")
    if "preferred_branch" in tree and (not isinstance(preferred, str) or not preferred):
        raise TreeError("preferred_branch must be a branch id (a non-empty string).")


def tree_import(
    *,
    tree: dict[str, Any],
    using: str = "default",
    dry_run: bool = False,
    report: ImportReport | None = None,
) -> ImportReport:
    """Write one session tree, in one transaction.

    Identity is the session id: a session already present with an identical tree is left
    alone (``unchanged``); one present with different content is not touched and is
    reported as a conflict. So importing twice changes nothing.

    Raises:
        TreeError: The tree is malformed.
    """
    report = report if report is not None else ImportReport()
    _validate_tree(tree)
    session_id = tree["session"]["session_id"]
    with transaction.atomic(using=using):
        if AgentSession.objects.using(using).filter(pk=session_id).exists():
            existing = tree_export(session_id=session_id, using=using)
            # Compared as values, not text: PostgreSQL's jsonb reorders object keys.
            if existing == json.loads(tree_dumps(tree)):
                report.unchanged.append(session_id)
            else:
                report.conflicts.append(
                    (session_id, "already present with different content; left unchanged")
                )
            return report
        if not dry_run:
            _write_tree(tree, using)
        report.imported.append(session_id)
        report.count("messages", len(tree["messages"]))
        report.count("structure rows", len(tree["structure"]))
        report.count("usage rows", len(tree["usage"]))
    return report


def _write_tree(tree: dict[str, Any], using: str) -> None:
    session_id = tree["session"]["session_id"]
    db = using
    with connections[db].cursor() as cursor:
        cursor.execute(statements(db).lock_generation, [session_id])
    AgentSession.objects.using(db).create(
        session_id=session_id,
        created_at=_ts_parse(tree["session"].get("created_at")),
        updated_at=_ts_parse(tree["session"].get("updated_at")),
    )
    messages = sorted(tree["messages"], key=lambda m: m["ref"])
    created = AgentMessage.objects.using(db).bulk_create(
        [
            AgentMessage(
                session_id=session_id,
                message_data=_json_in(m.get("item"), m.get("undecodable")),
                created_at=_ts_parse(m.get("created_at")),
            )
            for m in messages
        ]
    )
    ids = {m["ref"]: row.id for m, row in zip(messages, created, strict=True)}
    MessageStructure.objects.using(db).bulk_create(
        [
            MessageStructure(
                session_id=session_id,
                message_id=ids[row["message"]],
                branch_id=row["branch_id"],
                message_type=row["message_type"],
                sequence_number=row["sequence_number"],
                user_turn_number=row.get("user_turn_number"),
                branch_turn_number=row.get("branch_turn_number"),
                tool_name=row.get("tool_name"),
                created_at=_ts_parse(row.get("created_at")),
            )
            for row in tree["structure"]
        ]
    )
    TurnUsage.objects.using(db).bulk_create(
        [
            TurnUsage(
                session_id=session_id,
                branch_id=u["branch_id"],
                user_turn_number=u["user_turn_number"],
                requests=u.get("requests"),
                input_tokens=u.get("input_tokens"),
                output_tokens=u.get("output_tokens"),
                total_tokens=u.get("total_tokens"),
                input_tokens_details=_json_in(
                    u.get("input_tokens_details"), u.get("input_tokens_details_undecodable")
                ),
                output_tokens_details=_json_in(
                    u.get("output_tokens_details"), u.get("output_tokens_details_undecodable")
                ),
                created_at=_ts_parse(u.get("created_at")),
            )
            for u in tree["usage"]
        ]
    )
    reservations = tree.get("reservations") or []
    if reservations:
        with connections[db].cursor() as cursor:
            cursor.executemany(
                statements(db).reserve_branch, [(session_id, b) for b in reservations]
            )
    generation = tree.get("clear_generation")
    generations = SessionClearGeneration.objects.using(db).filter(session_id=session_id)
    if generation is None:
        generations.delete()  # the lock above created it; the source had none
    else:
        generations.update(generation=generation)
    if "preferred_branch" in tree:
        # Kept even if that branch has no rows here: the review pages then show main, as
        # they do for any mark whose branch is gone.
        PreferredBranch.objects.using(db).create(
            session_id=session_id, branch_id=tree["preferred_branch"]
        )


# ---- SDK SQLite files ------------------------------------------------------------------


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _quoted(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"Invalid table name {name!r}")
    return f'"{name}"'


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
    advanced: bool = False
    notes: list[str] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        path: str,
        sessions_table: str = "agent_sessions",
        messages_table: str = "agent_messages",
    ) -> SDKFile:
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

    has_reservations: bool = False
    has_generations: bool = False
    _derived: bool = False

    def session_ids(self) -> list[str]:
        rows = self.conn.execute(
            f"SELECT session_id FROM {_quoted(self.sessions_table)} ORDER BY session_id"
        )
        return [row[0] for row in rows]

    def message_count(self, session_ids: list[str] | None = None) -> int:
        sql = f"SELECT COUNT(*) FROM {_quoted(self.messages_table)}"
        return self.conn.execute(sql).fetchone()[0]

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
        messages, refs = [], {}
        for message_id, data, m_created in self.conn.execute(
            f"SELECT id, message_data, created_at FROM {mt} WHERE session_id = ? ORDER BY id",
            [session_id],
        ):
            where = f"session {session_id!r}, {self.messages_table} id {message_id}"
            try:
                item = json.loads(data)
            except (json.JSONDecodeError, TypeError, RecursionError):
                report.skipped_rows.append(f"{where}: undecodable JSON")
                continue
            if vendor == "postgresql" and "\\u0000" in json.dumps(item):
                report.skipped_rows.append(
                    f"{where}: contains \\u0000, which PostgreSQL's jsonb cannot store"
                )
                continue
            refs[message_id] = len(messages) + 1
            messages.append(
                {"ref": refs[message_id], "created_at": _ts_out(m_created), "item": item}
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
                "created_at": _ts_out(created_at),
                "updated_at": _ts_out(updated_at),
            },
            "clear_generation": generation,
            "reservations": reservations,
            "messages": messages,
            "structure": structure,
            "usage": usage,
        }

    def _structure(
        self, session_id: str, refs: dict[int, int], messages: list[dict], report: ImportReport
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
                    "created_at": _ts_out(created),
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
                "created_at": _ts_out(created),
            }
            for key, text in (
                ("input_tokens_details", in_details),
                ("output_tokens_details", out_details),
            ):
                if text is None:
                    continue
                try:
                    entry[key] = json.loads(text)
                except (json.JSONDecodeError, TypeError, RecursionError):
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
    """The trees of the requested sessions (all by default); unknown ids are reported."""
    available = source.session_ids()
    wanted = available if not session_ids else session_ids
    known = set(available)
    for session_id in wanted:
        if session_id not in known:
            report.conflicts.append((session_id, "not in the source file"))
            continue
        yield source.tree(session_id, report, vendor)
