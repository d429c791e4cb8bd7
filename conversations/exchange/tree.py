"""The JSON session tree: the lossless exchange format, exported and imported.

``export_session --format json`` writes it, ``import_session`` reads it back, and
``import_agents_db`` converts every session of an SDK SQLite file into a tree
(:mod:`.sdk_file`) before writing it through the same :func:`tree_import`.

Identity and losslessness: a tree holds every column of every row of the session, except
the database-local surrogate ids (message, structure and usage row ids). Messages are
numbered ``ref`` 1..n in id order and structure rows point at those refs, so the same
session exports to the same bytes from any database, and export -> import into an empty
database -> export is byte-identical. Timestamps are ISO 8601 in UTC.

Forkview's own mark on a session travels too: ``preferred_branch`` (the branch the review
pages open on) is present only when the session has one, so trees of unmarked sessions are
the same bytes as before the key existed. Who marked it and when stay behind.

The rows themselves are written by ``conversations.writes.tree_write`` (the one write path
to the SDK's tables); this module validates, compares and reports.
"""

from __future__ import annotations

import json
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, cast

from django.db import DatabaseError, connections, transaction
from django.utils.dateparse import parse_datetime

from .. import classify, items, writes
from ..models import (
    AgentMessage,
    AgentSession,
    BranchReservation,
    MessageStructure,
    PreferredBranch,
    SessionClearGeneration,
    TurnUsage,
)
from ..text import column_problem
from .snapshot import ROWS_PER_FETCH, TextBatcher, json_text, read_snapshot, timestamp_column

__all__ = [
    "TREE_FORMAT",
    "TREE_VERSION",
    "ImportReport",
    "TreeError",
    "tree_chunks",
    "tree_dumps",
    "tree_export",
    "tree_import",
]

TREE_FORMAT = "forkview.session-tree"
TREE_VERSION = 1


class TreeError(ValueError):
    """A tree file that cannot be imported (wrong format, inconsistent rows)."""


def _json_cell(value: Any) -> tuple[Any, str | None]:
    """(decoded value, undecodable raw text) of a JSON column as the ORM read it."""
    if items.is_undecodable(value):
        return None, str(value)
    return value, None


# ---- Export ----------------------------------------------------------------------------


def tree_export(*, session_id: str, using: str = "default") -> dict[str, Any]:
    """The whole session as a JSON-ready dict (see the module docstring), read in one
    snapshot (:func:`.snapshot.read_snapshot`). Holds the whole session in memory: for
    output, :func:`tree_chunks` gives the same text piece by piece.

    Raises:
        AgentSession.DoesNotExist: No such session.
    """
    with read_snapshot(using):
        head = _tree_head(session_id, using)
        ids: array[int] = array("q")
        tree = {
            **head,
            "messages": list(_message_entries(session_id, using, ids)),
            "structure": list(_structure_entries(session_id, using, ids)),
            "usage": list(_usage_entries(session_id, using)),
        }
        preferred = _preferred_branch(session_id, using)
        if preferred is not None:
            tree["preferred_branch"] = preferred
        return tree


def tree_chunks(*, session_id: str, using: str = "default") -> Iterator[str]:
    """:func:`tree_dumps` of :func:`tree_export`, the same text, as pieces of about
    :data:`CHUNK_CHARS` characters, read in one snapshot with the rows fetched
    :data:`ROWS_PER_FETCH` at a time: memory stays flat whatever the session's size.

    A generator: the snapshot is open while it runs; the first ``next()`` raises for a
    missing session before any text.

    Raises:
        AgentSession.DoesNotExist: No such session.
    """
    with read_snapshot(using):
        head = _tree_head(session_id, using)
        ids: array[int] = array("q")  # filled by the messages, read by the structure rows
        out = TextBatcher()
        yield from out.add("{\n" + _dumps_member(next(iter(head.items())), 1))
        for member in list(head.items())[1:]:
            yield from out.add(",\n" + _dumps_member(member, 1))
        for key, entries in (
            ("messages", _message_entries(session_id, using, ids)),
            ("structure", _structure_entries(session_id, using, ids)),
            ("usage", _usage_entries(session_id, using)),
        ):
            yield from out.add(f",\n  {json.dumps(key)}: [")
            empty = True
            for entry in entries:
                yield from out.add(("\n    " if empty else ",\n    ") + _dumps_nested(entry, 2))
                empty = False
            yield from out.add("]" if empty else "\n  ]")
        preferred = _preferred_branch(session_id, using)
        if preferred is not None:
            yield from out.add(",\n" + _dumps_member(("preferred_branch", preferred), 1))
        yield from out.add("\n}\n")
        yield from out.flush()


#: ``json.dumps(..., indent=2, ensure_ascii=False)``, built once (not per row).
_PRETTY = json.JSONEncoder(indent=2, ensure_ascii=False)


def _dumps_nested(value: Any, level: int) -> str:
    """``value`` as ``json.dumps(..., indent=2)`` writes it ``level`` levels deep (strings
    hold no raw line break: json escapes them)."""
    return _PRETTY.encode(value).replace("\n", _INDENTS[level])


_INDENTS = {level: "\n" + "  " * level for level in range(1, 3)}


def _dumps_member(member: tuple[str, Any], level: int) -> str:
    key, value = member
    return "  " * level + json.dumps(key, ensure_ascii=False) + ": " + _dumps_nested(value, level)


def _tree_head(session_id: str, using: str) -> dict[str, Any]:
    """Everything of the tree before its rows (format, version, session, clear generation,
    reservations), in the tree's key order."""
    ts = partial(timestamp_column, vendor=connections[using].vendor)
    found = (
        AgentSession.objects.using(using)
        .filter(pk=session_id)
        .values_list("session_id", ts("created_at"), ts("updated_at"))
        .first()
    )
    if found is None:
        raise AgentSession.DoesNotExist(f"No session {session_id!r}")
    stored_id, session_created, session_updated = found
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
    return {
        "format": TREE_FORMAT,
        "version": TREE_VERSION,
        "session": {
            "session_id": stored_id,
            "created_at": items.iso_timestamp(session_created),
            "updated_at": items.iso_timestamp(session_updated),
        },
        "clear_generation": generation,
        "reservations": reservations,
    }


def _preferred_branch(session_id: str, using: str) -> str | None:
    return (
        PreferredBranch.objects.using(using)
        .filter(session_id=session_id)
        .values_list("branch_id", flat=True)
        .first()
    )


def _message_entries(
    session_id: str, using: str, ids: array[int] | None = None
) -> Iterator[dict[str, Any]]:
    """The session's messages in id order, numbered ``ref`` 1..n; their ids are appended to
    ``ids`` (for :func:`_structure_entries`)."""
    ts = partial(timestamp_column, vendor=connections[using].vendor)
    rows = (
        AgentMessage.objects.using(using)
        .filter(session_id=session_id)
        .order_by("id")
        .values_list("id", "message_data", ts("created_at"))
        .iterator(chunk_size=ROWS_PER_FETCH)
    )
    for ref, (message_id, data, created) in enumerate(rows, 1):
        if ids is not None:
            ids.append(message_id)
        item, raw = _json_cell(data)
        entry: dict[str, Any] = {
            "ref": ref,
            "created_at": items.iso_timestamp(created),
            "item": item,
        }
        if raw is not None:
            entry["undecodable"] = raw
        yield entry


def _structure_entries(session_id: str, using: str, ids: array[int]) -> Iterator[dict[str, Any]]:
    """The session's structure rows in sequence order, each pointing at its message's ref.

    ``ids``: the session's message ids in order (8 bytes each: 35,200 messages take 275 KB),
    so a row's ref is its message's position, found by bisection; rows pointing at a message
    of no or another session are left out, as the importer would refuse them.
    """
    ts = partial(timestamp_column, vendor=connections[using].vendor)
    rows = (
        MessageStructure.objects.using(using)
        .filter(session_id=session_id)
        .order_by("sequence_number", "id")
        .values_list(
            "message_id",
            "branch_id",
            "message_type",
            "sequence_number",
            "user_turn_number",
            "branch_turn_number",
            "tool_name",
            ts("created_at"),
        )
        .iterator(chunk_size=ROWS_PER_FETCH)
    )
    for message_id, branch, mtype, seq, user_turn, branch_turn, tool, stamp in rows:
        at = bisect_left(ids, message_id)
        if at == len(ids) or ids[at] != message_id:
            continue
        yield {
            "message": at + 1,
            "branch_id": branch,
            "message_type": mtype,
            "sequence_number": seq,
            "user_turn_number": user_turn,
            "branch_turn_number": branch_turn,
            "tool_name": tool,
            "created_at": items.iso_timestamp(stamp),
        }


def _usage_entries(session_id: str, using: str) -> Iterator[dict[str, Any]]:
    ts = partial(timestamp_column, vendor=connections[using].vendor)
    for (
        branch_id,
        user_turn,
        requests,
        input_tokens,
        output_tokens,
        total_tokens,
        input_cell,
        output_cell,
        created,
    ) in (
        TurnUsage.objects.using(using)
        .filter(session_id=session_id)
        .order_by("branch_id", "user_turn_number")
        .values_list(
            "branch_id",
            "user_turn_number",
            "requests",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "input_tokens_details",
            "output_tokens_details",
            ts("created_at"),
        )
        .iterator(chunk_size=ROWS_PER_FETCH)
    ):
        input_details, input_raw = _json_cell(input_cell)
        output_details, output_raw = _json_cell(output_cell)
        entry = {
            "branch_id": branch_id,
            "user_turn_number": user_turn,
            "requests": requests,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": total_tokens,
            "input_tokens_details": input_details,
            "output_tokens_details": output_details,
            "created_at": items.iso_timestamp(created),
        }
        if input_raw is not None:
            entry["input_tokens_details_undecodable"] = input_raw
        if output_raw is not None:
            entry["output_tokens_details_undecodable"] = output_raw
        yield entry


def tree_dumps(tree: dict[str, Any]) -> str:
    """The canonical text of a tree (stable, so identical sessions give identical bytes)."""
    return json_text(json.dumps(tree, indent=2, ensure_ascii=False)) + "\n"


# ---- Import ----------------------------------------------------------------------------


@dataclass
class ImportReport:
    """What an import did, and every row it left out with the reason."""

    imported: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    conflicts: list[tuple[str, str]] = field(default_factory=list)
    skipped_rows: list[str] = field(default_factory=list)
    #: Sessions left out whole (``--skip-bad-sessions``), with the one-line reason.
    bad_sessions: list[tuple[str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
#: Nesting deeper than this in an item or usage detail is refused (the SDK's own ``json``
#: cannot read back much deeper; PostgreSQL's jsonb parser has a stack limit too).
MAX_DEPTH = 500


def _where(session: str | None, row: str | None = None) -> str:
    """``session 'x', structure row 3``: the prefix of every import error (ids as repr, so one
    line whatever they hold)."""
    parts = [f"session {session!r}" if session is not None else "tree"]
    if row:
        parts.append(row)
    return ", ".join(parts)


def _int(value: Any, bounds: tuple[int, int] = _INT32, *, nullable: bool = False) -> str | None:
    """Why ``value`` is not a storable integer (``None`` when it is)."""
    if value is None:
        return None if nullable else "is missing (null)"
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be an integer, not {type(value).__name__}"
    if not bounds[0] <= value <= bounds[1]:
        return (
            f"{str(value)[:30]}... is out of range"
            if len(str(value)) > 30
            else (f"{value} is out of range")
        )
    return None


def _json_problem(value: Any, vendor: str) -> str | None:
    """Why a JSON column cannot hold ``value`` (iterative: any depth is safe to check).

    Everywhere: nesting deeper than :data:`MAX_DEPTH`, NaN/Infinity (not JSON), a
    non-string object key. On PostgreSQL also what its jsonb cannot hold: NUL characters
    and lone surrogates (on SQLite they are stored as JSON escapes, as the SDK stores them).
    """
    strict = vendor == "postgresql"
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"is nested deeper than {MAX_DEPTH} levels"
        if isinstance(node, dict):
            for key, child in node.items():
                if not isinstance(key, str):
                    return "has a non-string object key"
                if strict and (problem := column_problem(key)):
                    return f"holds {problem}; PostgreSQL's jsonb cannot store it"
                stack.append((child, depth + 1))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
        elif isinstance(node, float):
            if node != node or node in (float("inf"), float("-inf")):
                return "holds NaN or Infinity (not JSON)"
        elif isinstance(node, str):
            if strict and (problem := column_problem(node)):
                return f"holds {problem}; PostgreSQL's jsonb cannot store it"
        elif node is not None and not isinstance(node, bool | int):
            return f"holds a {type(node).__name__}, which is not JSON"
    return None


def _date_problem(value: Any) -> str | None:
    if value is None or isinstance(value, datetime):
        return None
    if not isinstance(value, str):
        return f"must be an ISO 8601 date or null, not {type(value).__name__}"
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        return f"{value[:40]!r} is not a date (ISO 8601 expected)"
    return None


def _validate_tree(tree: Any, vendor: str = "sqlite") -> None:
    """Check a whole tree before anything is written; the first problem raises.

    Raises:
        TreeError: One line naming the session and the row (``session 'x', structure row 3
            (sequence_number 7): ...``).
    """
    if not isinstance(tree, dict):
        raise TreeError(f"Not a Forkview session tree: the top level is a {type(tree).__name__}.")
    if tree.get("format") != TREE_FORMAT:
        raise TreeError(f"Not a Forkview session tree (expected format {TREE_FORMAT!r}).")
    if tree.get("version") != TREE_VERSION:
        raise TreeError(f"Unsupported tree version {str(tree.get('version'))[:40]!r}.")
    session = tree.get("session")
    if not isinstance(session, dict) or "session_id" not in session:
        raise TreeError("The tree has no session id.")
    if not isinstance(session["session_id"], str):
        raise TreeError(
            f"tree: the session id {str(session['session_id'])[:40]!r} is a "
            f"{type(session['session_id']).__name__}, not text"
        )
    sid: str = session["session_id"]

    def fail(row: str | None, problem: str) -> TreeError:
        return TreeError(f"{_where(sid, row)}: {problem}")

    if not sid:
        raise fail(None, "the session id is empty")
    if problem := column_problem(sid):
        raise fail(None, f"the session id holds {problem}")
    for key in ("created_at", "updated_at"):
        if problem := _date_problem(session.get(key)):
            raise fail(f"session {key}", problem)
    for key in ("messages", "structure", "usage"):
        if not isinstance(tree.get(key), list):
            raise fail(None, f"{key!r} is missing or not a list")
    reservations = tree.get("reservations", [])
    if not isinstance(reservations, list):
        raise fail(None, "'reservations' must be a list of branch ids")
    for n, branch in enumerate(reservations, 1):
        if not isinstance(branch, str) or not branch:
            raise fail(f"reservation {n}", "must be a branch id (a non-empty string)")
        if problem := column_problem(branch):
            raise fail(f"reservation {n}", f"the branch id holds {problem}")
    if len(set(reservations)) != len(reservations):
        raise fail(None, "a branch is reserved twice")
    if problem := _int(tree.get("clear_generation"), nullable=True):
        raise fail(None, f"clear_generation {problem}")

    labels: dict[int, classify.ItemLabel | None] = {}
    for n, message in enumerate(tree["messages"], 1):
        row = f"message {n}"
        if not isinstance(message, dict):
            raise fail(row, "must be an object")
        ref = message.get("ref")
        if problem := _int(ref, _INT64):
            raise fail(row, f"ref {problem}")
        ref = cast(int, ref)
        row = f"message {n} (ref {ref})"
        if ref in labels:
            raise fail(row, "the ref is not unique")
        if "item" not in message:
            raise fail(row, "has no 'item'")
        if problem := _date_problem(message.get("created_at")):
            raise fail(row, f"created_at {problem}")
        raw = message.get("undecodable")
        if raw is not None:
            if not isinstance(raw, str):
                raise fail(row, "'undecodable' must be the stored text")
            if vendor == "postgresql":
                raise fail(row, "undecodable JSON, which PostgreSQL's jsonb cannot store")
            if problem := column_problem(raw):
                raise fail(row, f"the undecodable text holds {problem}")
            labels[ref] = None  # its labels were derived from an item nobody can read now
            continue
        if problem := _json_problem(message["item"], vendor):
            raise fail(row, f"the item {problem}")
        labels[ref] = classify.label(message["item"])

    sequences: set[int] = set()
    last_turns: dict[str, tuple[int, int | None, int | None]] = {}
    rows: list[tuple[int, int, str, int | None, int | None]] = []
    for n, entry in enumerate(tree["structure"], 1):
        row = f"structure row {n}"
        if not isinstance(entry, dict):
            raise fail(row, "must be an object")
        seq = entry.get("sequence_number")
        if problem := _int(seq):
            raise fail(row, f"sequence_number {problem}")
        seq = cast(int, seq)
        row = f"structure row {n} (sequence_number {seq})"
        if seq in sequences:
            raise fail(row, "the sequence number is not unique in the session")
        sequences.add(seq)
        ref = entry.get("message")
        if isinstance(ref, bool) or not isinstance(ref, int) or ref not in labels:
            raise fail(row, f"points at unknown message ref {str(ref)[:40]}")
        branch = entry.get("branch_id")
        if not isinstance(branch, str) or not branch:
            raise fail(row, "branch_id must be a non-empty string")
        if problem := column_problem(branch):
            raise fail(row, f"the branch id holds {problem}")
        for key in ("user_turn_number", "branch_turn_number"):
            if problem := _int(entry.get(key), nullable=True):
                raise fail(row, f"{key} {problem}")
        if problem := _date_problem(entry.get("created_at")):
            raise fail(row, f"created_at {problem}")
        mtype, tool = entry.get("message_type"), entry.get("tool_name")
        if not isinstance(mtype, str) or not (tool is None or isinstance(tool, str)):
            raise fail(row, "message_type must be a string and tool_name a string or null")
        label = labels[ref]
        if label is not None and (mtype, tool) != (label.message_type, label.tool_name):
            raise fail(
                row,
                f"labels message_type={mtype[:40]!r}, tool_name={str(tool)[:40]!r} contradict "
                f"the item (message_type={label.message_type!r}, "
                f"tool_name={label.tool_name!r})",
            )
        for text in (mtype, tool):
            if text is not None and (problem := column_problem(text)):
                raise fail(row, f"a label holds {problem}")
        turns = (entry.get("user_turn_number"), entry.get("branch_turn_number"))
        rows.append((seq, n, branch, *turns))
    # Turn numbers never decrease along a branch (in sequence order).
    for seq, n, branch, user_turn, branch_turn in sorted(rows):
        before = last_turns.get(branch)
        if before is not None:
            for name, now, then in (
                ("user_turn_number", user_turn, before[1]),
                ("branch_turn_number", branch_turn, before[2]),
            ):
                if now is not None and then is not None and now < then:
                    raise fail(
                        f"structure row {n} (sequence_number {seq})",
                        f"{name} {now} on branch {branch!r} is lower than {then} at "
                        f"sequence_number {before[0]} (turns never decrease along a branch)",
                    )
        last_turns[branch] = (
            seq,
            user_turn if user_turn is not None else (before[1] if before else None),
            branch_turn if branch_turn is not None else (before[2] if before else None),
        )

    seen_usage: set[tuple[str, int]] = set()
    for n, entry in enumerate(tree["usage"], 1):
        row = f"usage row {n}"
        if not isinstance(entry, dict):
            raise fail(row, "must be an object")
        branch, turn = entry.get("branch_id"), entry.get("user_turn_number")
        if not isinstance(branch, str) or not branch:
            raise fail(row, "branch_id must be a non-empty string")
        if problem := column_problem(branch):
            raise fail(row, f"the branch id holds {problem}")
        if problem := _int(turn):
            raise fail(row, f"user_turn_number {problem}")
        turn = cast(int, turn)
        row = f"usage row {n} (branch {branch!r}, turn {turn})"
        if (branch, turn) in seen_usage:
            raise fail(row, "a second usage row for the same branch and turn")
        seen_usage.add((branch, turn))
        for key in ("requests", "input_tokens", "output_tokens", "total_tokens"):
            if problem := _int(entry.get(key), _INT64, nullable=True):
                raise fail(row, f"{key} {problem}")
        for key in ("input_tokens_details", "output_tokens_details"):
            raw = entry.get(f"{key}_undecodable")
            if raw is not None and (not isinstance(raw, str) or vendor == "postgresql"):
                raise fail(row, f"{key} is undecodable JSON, which cannot be stored here")
            if problem := _json_problem(entry.get(key), vendor):
                raise fail(row, f"{key} {problem}")
        if problem := _date_problem(entry.get("created_at")):
            raise fail(row, f"created_at {problem}")
    preferred = tree.get("preferred_branch")
    if "preferred_branch" in tree and (not isinstance(preferred, str) or not preferred):
        raise fail(None, "preferred_branch must be a branch id (a non-empty string).")
    if isinstance(preferred, str) and (problem := column_problem(preferred)):
        raise fail(None, f"preferred_branch holds {problem}")


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
        TreeError: The tree is malformed (checked before anything is written), or the
            database refused a row (the session's writes are rolled back). One line that
            names the session.
    """
    report = report if report is not None else ImportReport()
    _validate_tree(tree, connections[using].vendor)
    session_id = tree["session"]["session_id"]
    try:
        return _tree_import(tree, session_id, using, dry_run, report)
    except DatabaseError as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TreeError(
            f"{_where(session_id)}: the database refused the write "
            f"({first_line[:200]}); nothing of this session was written"
        ) from exc


def _tree_import(
    tree: dict[str, Any], session_id: str, using: str, dry_run: bool, report: ImportReport
) -> ImportReport:
    with transaction.atomic(using=using):
        if AgentSession.objects.using(using).filter(pk=session_id).exists():
            existing = tree_export(session_id=session_id, using=using)
            # Compared as values, not text: PostgreSQL's jsonb reorders object keys.
            if existing == items.decode(tree_dumps(tree)):
                report.unchanged.append(session_id)
            else:
                report.conflicts.append(
                    (session_id, "already present with different content; left unchanged")
                )
            return report
        if not dry_run:
            writes.tree_write(tree=tree, using=using)
            if "preferred_branch" in tree:
                # Forkview's own table, not the SDK's. Kept even if that branch has no rows
                # here: the review pages then show main, as for any mark whose branch is gone.
                PreferredBranch.objects.using(using).create(
                    session_id=session_id, branch_id=tree["preferred_branch"]
                )
        report.imported.append(session_id)
        report.count("messages", len(tree["messages"]))
        report.count("structure rows", len(tree["structure"]))
        report.count("usage rows", len(tree["usage"]))
    return report
