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

The review workflow's records travel the same way (issue 15), each key present only when
there is something to carry, so trees of sessions nobody reviewed keep their bytes:

- ``annotations``: every score, comment and tag of the session, oldest first, each as
  ``{kind, branch_id, turn, definition, value, label, body, author, created_at,
  updated_at}`` (``branch_id ""`` is the session, ``turn 0`` a whole branch; ``definition``
  the score definition's *name*, ``author`` a *username*);
- ``review``: ``{status, assignee}`` (a username), when the session is not plain
  "unreviewed and unassigned".

Traces (issue 16) travel the same way: ``traces`` (present only when the session has linked
traces, so older trees keep their bytes) holds every trace linked to the session, by start
then id, each as ``{trace_id, workflow_name, group_id, branch_id, turn, metadata, started_at,
ended_at, spans}`` with its spans by start then id, each as ``{span_id, parent_id, kind, name,
started_at, ended_at, duration_ms, error, model, input_tokens, output_tokens,
cached_input_tokens, reasoning_tokens, data}`` (times ISO 8601 in UTC; the JSON values'
object keys sorted, so both databases give the same bytes). On import every entry is checked
first (:func:`_validate_traces`: shapes, sizes, times, ids unique in the tree, what the columns
can hold on any database; a trace's branch and turn need not be in the tree: a popped turn
keeps its trace), then written by :mod:`conversations.trace_import`, linked to the imported
session; a trace whose id or a span id is already present in the database is re-identified
(new ids, counted in the report) rather than skipped.

Importing them: every annotation is checked before the first write (its target exists in
the imported tree, its text passes the rules of :mod:`conversations.reviews`, a score's
value fits its definition, no second tag of a name on a target nor second score of an
author). Score definitions are configuration, not data: a definition the importing
database does not have is refused (``TreeError`` naming it: create it in the admin first),
never created from the file. Authors and assignees are people of another deployment: a
username the importing database does not know is imported as nobody (``null``; the
report counts them), rather than refusing the session or inventing accounts.

The rows themselves are written by ``conversations.writes.tree_write`` (the one write path
to the SDK's tables); this module validates, compares and reports.
"""

from __future__ import annotations

import json
import math
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, cast

from django.contrib.auth import get_user_model
from django.db import DatabaseError, connections, transaction
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .. import classify, items, reviews, trace_import, writes
from ..models import (
    SPAN_FIELDS,
    AgentMessage,
    AgentSession,
    AgentSpan,
    AgentTrace,
    Annotation,
    AnnotationKind,
    BranchReservation,
    MessageStructure,
    PreferredBranch,
    ReviewStatus,
    ScoreDefinition,
    ScoreKind,
    SessionClearGeneration,
    SessionReview,
    SpanKind,
    TurnUsage,
)
from ..review_import import annotations_import
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
        notes = list(_annotation_entries(session_id, using))
        if notes:
            tree["annotations"] = notes
        review = _review_entry(session_id, using)
        if review is not None:
            tree["review"] = review
        traces = list(_trace_entries(session_id, using))
        if traces:
            tree["traces"] = traces
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
        empty = True
        for entry in _annotation_entries(session_id, using):
            opening = ',\n  "annotations": [\n    ' if empty else ",\n    "
            yield from out.add(opening + _dumps_nested(entry, 2))
            empty = False
        if not empty:
            yield from out.add("\n  ]")
        review = _review_entry(session_id, using)
        if review is not None:
            yield from out.add(",\n" + _dumps_member(("review", review), 1))
        empty = True
        for entry in _trace_entries(session_id, using):
            opening = ',\n  "traces": [\n    ' if empty else ",\n    "
            yield from out.add(opening + _dumps_nested(entry, 2))
            empty = False
        if not empty:
            yield from out.add("\n  ]")
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


def _annotation_entries(session_id: str, using: str) -> Iterator[dict[str, Any]]:
    """The session's annotations, oldest first (see the module docstring)."""
    ts = partial(timestamp_column, vendor=connections[using].vendor)
    author = f"author__{get_user_model().USERNAME_FIELD}"
    rows = (
        Annotation.objects.using(using)
        .filter(session_id=session_id)
        .order_by("created_at", "id")
        .values_list(
            "kind",
            "branch_id",
            "turn",
            "definition__name",
            "value",
            "label",
            "body",
            author,
            ts("created_at"),
            ts("updated_at"),
        )
        .iterator(chunk_size=ROWS_PER_FETCH)
    )
    for kind, branch, turn, definition, value, label, body, name, created, updated in rows:
        yield {
            "kind": kind,
            "branch_id": branch,
            "turn": turn,
            "definition": definition,
            "value": value,
            "label": label,
            "body": body,
            "author": name,
            "created_at": items.iso_timestamp(created),
            "updated_at": items.iso_timestamp(updated),
        }


def _review_entry(session_id: str, using: str) -> dict[str, Any] | None:
    """The session's review status, ``None`` when it is unreviewed and unassigned."""
    found = (
        SessionReview.objects.using(using)
        .filter(session_id=session_id)
        .values_list("status", f"assignee__{get_user_model().USERNAME_FIELD}")
        .first()
    )
    if found is None or (found[0] == ReviewStatus.UNREVIEWED and found[1] is None):
        return None
    return {"status": found[0], "assignee": found[1]}


#: The keys of a trace entry and of a span entry, in the export's order.
TRACE_KEYS = (
    "trace_id",
    "workflow_name",
    "group_id",
    "branch_id",
    "turn",
    "metadata",
    "started_at",
    "ended_at",
    "spans",
)
SPAN_KEYS = SPAN_FIELDS  # the span fields, in their order


def _sorted_keys(value: Any) -> Any:
    """A JSON value with every object's keys sorted (PostgreSQL's jsonb keeps its own order,
    SQLite the writer's: sorted, both export the same bytes). Iterative: any depth."""
    if not isinstance(value, dict | list):
        return value
    root: list[Any] = [value]
    stack: list[tuple[Any, Any, Any]] = [(root, 0, value)]
    while stack:
        parent, key, node = stack.pop()
        if isinstance(node, dict):
            copy: Any = {k: node[k] for k in sorted(node)}
            for k, child in copy.items():
                if isinstance(child, dict | list):
                    stack.append((copy, k, child))
        else:
            copy = list(node)
            for i, child in enumerate(copy):
                if isinstance(child, dict | list):
                    stack.append((copy, i, child))
        parent[key] = copy
    return root[0]


def _iso(value: datetime | None) -> str | None:
    return items.iso_timestamp(value)


def _trace_entries(session_id: str, using: str) -> Iterator[dict[str, Any]]:
    """The session's linked traces, each with its spans (see the module docstring): two
    queries, spans fetched :data:`ROWS_PER_FETCH` at a time in the traces' order (a merge)."""
    start = F("started_at").asc(nulls_first=True)
    traces = AgentTrace.objects.using(using).filter(session_id=session_id)
    trace_rows = traces.order_by(start, "trace_id").values_list(
        "trace_id",
        "workflow_name",
        "group_id",
        "branch_id",
        "turn",
        "metadata",
        "started_at",
        "ended_at",
    )
    spans_query = (
        AgentSpan.objects.using(using)
        .filter(trace_id__in=traces.values("trace_id"))
        .annotate(
            trace_start=Subquery(
                AgentTrace.objects.using(using)
                .filter(trace_id=OuterRef("trace_id"))
                .values("started_at")[:1]
            )
        )
        .order_by(F("trace_start").asc(nulls_first=True), "trace_id", start, "span_id")
        .values_list(*SPAN_KEYS, "trace_id")
    )
    span_rows: Iterator[tuple[Any, ...]] | None = None
    pending: tuple[Any, ...] | None = None
    for trace_id, workflow, group, branch, turn, metadata, started, ended in trace_rows.iterator(
        chunk_size=ROWS_PER_FETCH
    ):
        if span_rows is None:  # no second query for a session without traces
            span_rows = spans_query.iterator(chunk_size=ROWS_PER_FETCH)
            pending = next(span_rows, None)
        spans = []
        while pending is not None and pending[-1] == trace_id:
            row = dict(zip(SPAN_KEYS, pending[:-1], strict=True))
            row["started_at"], row["ended_at"] = _iso(row["started_at"]), _iso(row["ended_at"])
            row["error"], row["data"] = _sorted_keys(row["error"]), _sorted_keys(row["data"])
            spans.append(row)
            pending = next(span_rows, None)
        yield {
            "trace_id": trace_id,
            "workflow_name": workflow,
            "group_id": group,
            "branch_id": branch,
            "turn": turn,
            "metadata": _sorted_keys(metadata),
            "started_at": _iso(started),
            "ended_at": _iso(ended),
            "spans": spans,
        }


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
    user_turns = {(branch, user_turn) for _seq, _n, branch, user_turn, _bt in rows}
    _validate_annotations(tree, user_turns, fail)
    _validate_traces(tree, fail)


#: Limits of an imported trace: an id's length, a text's, a JSON value's (as JSON text).
MAX_TRACE_ID_CHARS = 256
MAX_TRACE_TEXT_CHARS = 10_000
MAX_TRACE_JSON_CHARS = 8 * 1024 * 1024
_SPAN_KINDS = frozenset(SpanKind.values)


def _trace_json_problem(value: Any, *, object_only: bool) -> str | None:
    """Why a trace's JSON value cannot be imported: not an object (``object_only``), too
    big, or what a column of *any* database cannot hold (the processor never stores NUL or
    lone surrogates, so a tree importable here is importable on both databases)."""
    if value is None:
        return None
    if object_only and not isinstance(value, dict):
        return f"must be an object or null, not {type(value).__name__}"
    if problem := _json_problem(value, "postgresql"):
        return problem
    if len(json.dumps(value, ensure_ascii=False)) > MAX_TRACE_JSON_CHARS:
        return f"is larger than {MAX_TRACE_JSON_CHARS} characters as JSON"
    return None


def _text_problem(value: Any, *, limit: int, nullable: bool, empty: bool = True) -> str | None:
    if value is None:
        return None if nullable else "is missing (null)"
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if not value and not empty:
        return "is empty"
    if len(value) > limit:
        return f"is longer than {limit} characters"
    if problem := column_problem(value):
        return f"holds {problem}"
    return None


def _validate_traces(tree: dict[str, Any], fail: Any) -> None:
    """The checks of ``traces``: every entry's shape, sizes and times, and ids unique in the
    tree (parent ids are free text: one naming no span, itself or a cycle is stored as is)."""
    if "traces" not in tree:
        return
    traces = tree["traces"]
    if not isinstance(traces, list):
        raise fail(None, "'traces' must be a list")
    trace_ids: set[str] = set()
    span_ids: set[str] = set()
    for n, trace in enumerate(traces, 1):
        row = f"trace {n}"
        if not isinstance(trace, dict):
            raise fail(row, "must be an object")
        if unknown := sorted(set(trace) - set(TRACE_KEYS)):
            raise fail(row, f"unknown key {str(unknown[0])[:40]!r}")
        trace_id = trace.get("trace_id")
        if problem := _text_problem(
            trace_id, limit=MAX_TRACE_ID_CHARS, nullable=False, empty=False
        ):
            raise fail(row, f"trace_id {problem}")
        row = f"trace {n} ({str(trace_id)[:40]!r})"
        if trace_id in trace_ids:
            raise fail(row, "a second trace with this id")
        trace_ids.add(cast(str, trace_id))
        if problem := _text_problem(
            trace.get("workflow_name", ""), limit=MAX_TRACE_TEXT_CHARS, nullable=False
        ):
            raise fail(row, f"workflow_name {problem}")
        for key in ("group_id", "branch_id"):
            if problem := _text_problem(trace.get(key), limit=MAX_TRACE_TEXT_CHARS, nullable=True):
                raise fail(row, f"{key} {problem}")
        if problem := _int(trace.get("turn"), nullable=True):
            raise fail(row, f"turn {problem}")
        if problem := _trace_json_problem(trace.get("metadata"), object_only=True):
            raise fail(row, f"metadata {problem}")
        for key in ("started_at", "ended_at"):
            if problem := _date_problem(trace.get(key)):
                raise fail(row, f"{key} {problem}")
        spans = trace.get("spans", [])
        if not isinstance(spans, list):
            raise fail(row, "'spans' must be a list")
        for m, span in enumerate(spans, 1):
            _validate_span(span, f"{row}, span {m}", span_ids, fail)


def _validate_span(span: Any, row: str, span_ids: set[str], fail: Any) -> None:
    if not isinstance(span, dict):
        raise fail(row, "must be an object")
    if unknown := sorted(set(span) - set(SPAN_KEYS)):
        raise fail(row, f"unknown key {str(unknown[0])[:40]!r}")
    span_id = span.get("span_id")
    if problem := _text_problem(span_id, limit=MAX_TRACE_ID_CHARS, nullable=False, empty=False):
        raise fail(row, f"span_id {problem}")
    row = f"{row} ({str(span_id)[:40]!r})"
    if span_id in span_ids:
        raise fail(row, "a second span with this id")
    span_ids.add(cast(str, span_id))
    if problem := _text_problem(span.get("parent_id"), limit=MAX_TRACE_ID_CHARS, nullable=True):
        raise fail(row, f"parent_id {problem}")
    kind = span.get("kind")
    if not isinstance(kind, str) or kind not in _SPAN_KINDS:
        raise fail(row, f"kind must be one of {', '.join(SpanKind.values)}")
    if problem := _text_problem(span.get("name", ""), limit=MAX_TRACE_TEXT_CHARS, nullable=False):
        raise fail(row, f"name {problem}")
    if problem := _text_problem(span.get("model"), limit=MAX_TRACE_TEXT_CHARS, nullable=True):
        raise fail(row, f"model {problem}")
    for key in ("started_at", "ended_at"):
        if problem := _date_problem(span.get(key)):
            raise fail(row, f"{key} {problem}")
    duration = span.get("duration_ms")
    if duration is not None and (
        isinstance(duration, bool)
        or not isinstance(duration, int | float)
        or not math.isfinite(duration)
        or abs(duration) > 1e15
    ):
        raise fail(row, "duration_ms must be a finite number of milliseconds or null")
    for key in ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens"):
        if problem := _int(span.get(key), _INT64, nullable=True):
            raise fail(row, f"{key} {problem}")
    if problem := _trace_json_problem(span.get("error"), object_only=True):
        raise fail(row, f"error {problem}")
    if "data" in span and not isinstance(span["data"], dict):
        raise fail(row, f"data must be an object, not {type(span['data']).__name__}")
    if problem := _trace_json_problem(span.get("data"), object_only=True):
        raise fail(row, f"data {problem}")


#: The keys of an annotation entry, in the export's order.
ANNOTATION_KEYS = (
    "kind",
    "branch_id",
    "turn",
    "definition",
    "value",
    "label",
    "body",
    "author",
    "created_at",
    "updated_at",
)


def _validate_annotations(
    tree: dict[str, Any],
    turns: set[tuple[str, int | None]],
    fail: Any,
) -> None:
    """The checks of ``annotations`` and ``review`` that need no database: shapes, targets
    in this tree, the text rules of :mod:`conversations.reviews`, duplicates."""
    branches = {branch for branch, _turn in turns}
    notes = tree.get("annotations", [])
    if not isinstance(notes, list):
        raise fail(None, "'annotations' must be a list")
    tags: set[tuple[str, str, int]] = set()
    scores: set[tuple[str, str, int, str]] = set()
    for n, note in enumerate(notes, 1):
        row = f"annotation {n}"
        if not isinstance(note, dict):
            raise fail(row, "must be an object")
        if unknown := sorted(set(note) - set(ANNOTATION_KEYS)):
            raise fail(row, f"unknown key {str(unknown[0])[:40]!r}")
        kind = note.get("kind")
        if kind not in AnnotationKind.values:
            raise fail(row, f"kind must be one of {', '.join(AnnotationKind.values)}")
        branch, turn = note.get("branch_id", ""), note.get("turn", 0)
        if not isinstance(branch, str):
            raise fail(row, "branch_id must be a string ('' for the whole session)")
        if problem := _int(turn, (0, _INT32[1])):
            raise fail(row, f"turn {problem}")
        if turn and not branch:
            raise fail(row, "a turn belongs to a branch: branch_id is empty")
        if branch and branch not in branches:
            raise fail(row, f"branch {branch[:40]!r} has no rows in this tree")
        if turn and (branch, turn) not in turns:
            raise fail(row, f"branch {branch[:40]!r} has no turn {turn} in this tree")
        row = f"annotation {n} ({kind} on {branch[:40]!r}, turn {turn})"
        author = note.get("author")
        if author is not None and (not isinstance(author, str) or column_problem(author)):
            raise fail(row, "author must be a username or null")
        for key in ("created_at", "updated_at"):
            if problem := _date_problem(note.get(key)):
                raise fail(row, f"{key} {problem}")
        definition, value = note.get("definition"), note.get("value")
        label, body = note.get("label", ""), note.get("body", "")
        if not isinstance(label, str) or not isinstance(body, str):
            raise fail(row, "label and body must be strings")
        try:
            if kind == AnnotationKind.SCORE:
                if not isinstance(definition, str) or not definition:
                    raise fail(row, "a score names its definition")
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise fail(row, "a score's value must be a number")
                reviews.check_body(body, required=False)
                if author is not None:
                    score_key = (definition, branch, turn, author)
                    if score_key in scores:
                        raise fail(row, f"a second {definition[:40]!r} score by {author[:40]!r}")
                    scores.add(score_key)
            else:
                if definition is not None or value is not None:
                    raise fail(row, f"a {kind} has no definition nor value")
                if kind == AnnotationKind.COMMENT:
                    reviews.check_body(body, required=True)
                    if label:
                        raise fail(row, "a comment has no label")
                else:
                    reviews.check_tag(label)
                    if body:
                        raise fail(row, "a tag has no body")
                    if (label, branch, turn) in tags:
                        raise fail(row, f"a second tag {label[:40]!r} on the same target")
                    tags.add((label, branch, turn))
        except reviews.ReviewError as exc:
            raise fail(row, f"{exc.field or 'value'}: {exc}") from exc
    if "review" in tree:
        review = tree["review"]
        if not isinstance(review, dict) or set(review) - {"status", "assignee"}:
            raise fail(None, "'review' must be an object with 'status' and 'assignee'")
        if review.get("status", ReviewStatus.UNREVIEWED) not in ReviewStatus.values:
            raise fail(None, f"review status must be one of {', '.join(ReviewStatus.values)}")
        assignee = review.get("assignee")
        if assignee is not None and (not isinstance(assignee, str) or column_problem(assignee)):
            raise fail(None, "the review's assignee must be a username or null")


@dataclass
class _Reviews:
    """A tree's annotations and review, resolved against the importing database."""

    annotations: list[Annotation] = field(default_factory=list)
    times: list[tuple[datetime, datetime]] = field(default_factory=list)
    review: SessionReview | None = None
    unknown_people: int = 0


def _resolve_reviews(tree: dict[str, Any], using: str) -> _Reviews:
    """Definitions by name and people by username (two queries), each score's value checked
    against its definition; no write.

    Raises:
        TreeError: A definition this database does not have, or a value that does not fit.
    """
    sid = tree["session"]["session_id"]
    notes: list[dict[str, Any]] = tree.get("annotations", [])
    review = tree.get("review")
    resolved = _Reviews()
    if not notes and review is None:
        return resolved
    names = {note["definition"] for note in notes if note.get("kind") == AnnotationKind.SCORE}
    definitions = {d.name: d for d in ScoreDefinition.objects.using(using).filter(name__in=names)}
    user_model = get_user_model()
    wanted = {note.get("author") for note in notes} | {(review or {}).get("assignee")}
    wanted.discard(None)
    people = {
        user.get_username(): user
        for user in user_model._default_manager.db_manager(using).filter(
            **{f"{user_model.USERNAME_FIELD}__in": wanted}
        )
    }
    now = timezone.now()
    for n, note in enumerate(notes, 1):
        kind, branch, turn = note["kind"], note.get("branch_id", ""), note.get("turn", 0)
        row = f"annotation {n} ({kind} on {branch[:40]!r}, turn {turn})"
        definition = None
        value, label = None, note.get("label", "")
        if kind == AnnotationKind.SCORE:
            definition = definitions.get(note["definition"])
            if definition is None:
                raise TreeError(
                    f"{_where(sid, row)}: there is no score definition "
                    f"{note['definition'][:64]!r} here; create it in the admin "
                    "(Score definitions) before importing"
                )
            given = label if definition.kind == ScoreKind.CATEGORICAL else note["value"]
            try:
                value, label = reviews.score_value(definition=definition, value=given)
            except reviews.ReviewError as exc:
                raise TreeError(f"{_where(sid, row)}: {exc}") from exc
            if value != note["value"] or label != note.get("label", ""):
                raise TreeError(
                    f"{_where(sid, row)}: value {str(note['value'])[:40]} and label "
                    f"{note.get('label', '')[:40]!r} do not match the definition "
                    f"{definition.name!r} here ({value:g} is {label!r})"
                )
        author = people.get(note["author"]) if note.get("author") is not None else None
        if note.get("author") is not None and author is None:
            resolved.unknown_people += 1
        resolved.annotations.append(
            Annotation(
                kind=kind,
                session_id=sid,
                branch_id=branch,
                turn=turn,
                author=author,
                definition=definition,
                value=value,
                label=label,
                body=note.get("body", ""),
            )
        )
        created = items.parse_timestamp(note.get("created_at")) or now
        updated = items.parse_timestamp(note.get("updated_at")) or created
        resolved.times.append((created, updated))
    if review is not None:
        assignee_name = review.get("assignee")
        assignee = people.get(assignee_name) if assignee_name is not None else None
        if assignee_name is not None and assignee is None:
            resolved.unknown_people += 1
        resolved.review = SessionReview(
            session_id=sid,
            status=review.get("status", ReviewStatus.UNREVIEWED),
            assignee=assignee,
        )
    return resolved


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
        resolved = _resolve_reviews(tree, using)
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
            annotations_import(
                session_id=session_id,
                annotations=resolved.annotations,
                times=resolved.times,
                review=resolved.review,
                using=using,
            )
        traces = trace_import.traces_resolve(
            session_id=session_id, entries=tree.get("traces", []), using=using
        )
        if not dry_run:
            trace_import.traces_write(resolved=traces, using=using)
        report.imported.append(session_id)
        if traces.traces:
            report.count("traces", len(traces.traces))
            report.count("spans", len(traces.spans))
        if traces.reidentified:
            report.count("traces re-identified (ids already present)", traces.reidentified)
        if resolved.annotations:
            report.count("annotations", len(resolved.annotations))
        if resolved.unknown_people:
            report.count("unknown authors (imported as nobody)", resolved.unknown_people)
        report.count("messages", len(tree["messages"]))
        report.count("structure rows", len(tree["structure"]))
        report.count("usage rows", len(tree["usage"]))
    return report
