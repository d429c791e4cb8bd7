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
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.db import connections, transaction

from .. import items, writes
from ..models import (
    AgentMessage,
    AgentSession,
    BranchReservation,
    MessageStructure,
    PreferredBranch,
    SessionClearGeneration,
    TurnUsage,
)
from .snapshot import json_text, read_snapshot, timestamp_column

__all__ = [
    "TREE_FORMAT",
    "TREE_VERSION",
    "ImportReport",
    "TreeError",
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
    snapshot (:func:`.snapshot.read_snapshot`).

    Raises:
        AgentSession.DoesNotExist: No such session.
    """
    with read_snapshot(using):
        return _tree_export(session_id, using)


def _tree_export(session_id: str, using: str) -> dict[str, Any]:
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
    messages = list(
        AgentMessage.objects.using(using)
        .filter(session_id=session_id)
        .order_by("id")
        .values_list("id", "message_data", ts("created_at"))
    )
    refs = {message_id: n for n, (message_id, _, _) in enumerate(messages, 1)}
    out_messages = []
    for message_id, data, created in messages:
        item, raw = _json_cell(data)
        entry: dict[str, Any] = {
            "ref": refs[message_id],
            "created_at": items.iso_timestamp(created),
            "item": item,
        }
        if raw is not None:
            entry["undecodable"] = raw
        out_messages.append(entry)
    structure = [
        {
            "message": refs[message_id],
            "branch_id": branch_id,
            "message_type": message_type,
            "sequence_number": sequence_number,
            "user_turn_number": user_turn,
            "branch_turn_number": branch_turn,
            "tool_name": tool_name,
            "created_at": items.iso_timestamp(created),
        }
        for (
            message_id,
            branch_id,
            message_type,
            sequence_number,
            user_turn,
            branch_turn,
            tool_name,
            created,
        ) in MessageStructure.objects.using(using)
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
        if message_id in refs
    ]
    usage = []
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
            "session_id": stored_id,
            "created_at": items.iso_timestamp(session_created),
            "updated_at": items.iso_timestamp(session_updated),
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
    return json_text(json.dumps(tree, indent=2, ensure_ascii=False)) + "\n"


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
