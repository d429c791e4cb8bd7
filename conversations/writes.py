"""The one write path to the SDK's tables.

Every INSERT, UPDATE and DELETE on ``agent_sessions``, ``agent_messages``,
``message_structure``, ``turn_usage``, ``branch_reservations`` and
``session_clear_generations`` is issued here (migrations aside): by ``DjangoSession``, the
staff services (and so the admin), and the importers. Each rule of those tables, and its SQL,
is written once:

- **The writer lock.** A session's writers serialise on its ``session_clear_generations``
  row: an upsert takes its row lock on PostgreSQL; on SQLite the ``IMMEDIATE`` transaction
  already holds the file's write lock from ``BEGIN``. Every method of :class:`SessionWriter`
  runs after :meth:`SessionWriter.lock`, inside the caller's ``transaction.atomic()``; on
  PostgreSQL :meth:`SessionWriter.append_locked` and :meth:`SessionWriter.pop_locked` take the
  lock themselves, in the same single statement as the rest (migration 0007's functions).
- **Branch ids are reserved forever** (``branch_reservations``): a branch's first rows, a
  pop, a delete, a rename (both names) and a clear (every branch with rows) reserve them.
- **Numbering a batch.** Sequence numbers are session-global and rise by one per row; a user
  message opens the next user turn and the next branch turn; the branch's newest row carries
  its current numbers (they never decrease along a branch).
- **Pop semantics.** Only a branch's last row is removed; its message goes when no structure
  row of the session still references it; a turn left empty loses its usage row.
- **Usage** is one row per (branch, turn), replaced, never summed.

``conversations.sql`` holds the hot statements; only this module and ``session.py`` (which
reads with them) import it. Nothing here validates what a staff user asked for: the
services do, and raise their own errors, before calling in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, transaction
from django.db.models import Exists, Max, Model, OuterRef

from . import classify, items, reviews, trace_follow
from .fields import RawJSON, SDKJSONField
from .models import (
    MAIN_BRANCH,
    AgentMessage,
    AgentSession,
    BranchReservation,
    MessageStructure,
    MessageStructureQuerySet,
    SessionClearGeneration,
    TurnUsage,
    TurnUsageQuerySet,
)
from .sql import SessionSQL, statements

__all__ = [
    "SessionWriter",
    "StructureBuild",
    "UsageRow",
    "session_copy",
    "timestamps_set",
    "tree_write",
]

#: ``execute(sql, params)``: the rows of a statement that returns rows, else its rowcount.
Execute = Callable[[str, Sequence[Any]], Any]
#: ``executemany(sql, rows)``.
ExecuteMany = Callable[[str, list[tuple[Any, ...]]], None]

# SQLite's statement-variable limit is far above this; it only bounds one IN (...) list.
_DELETE_CHUNK = 500


def _cursor_runners(using: str) -> tuple[Execute, ExecuteMany]:
    """Statements through Django's cursor on ``using`` (its logging, wrappers, errors)."""

    def execute(sql: str, params: Sequence[Any]) -> Any:
        with connections[using].cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else cursor.rowcount

    def executemany(sql: str, rows: list[tuple[Any, ...]]) -> None:
        with connections[using].cursor() as cursor:
            cursor.executemany(sql, rows)

    return execute, executemany


@dataclass(frozen=True, slots=True)
class UsageRow:
    """The token counts of one turn, as ``turn_usage`` stores them."""

    requests: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: RawJSON | None = None
    output_tokens_details: RawJSON | None = None


@dataclass(frozen=True)
class StructureBuild:
    """What :meth:`SessionWriter.build_main_rows` did."""

    created: int
    skipped_undecodable: list[int] = field(default_factory=list)


class SessionWriter:
    """The write primitives of one session on one database.

    Call :meth:`lock` first, inside ``transaction.atomic(using=...)``, then any other method.
    ``execute``/``executemany`` let ``DjangoSession`` run the statements on its own fast path
    (the same connection and transaction); by default they go through Django's cursor.
    """

    def __init__(
        self,
        session_id: str,
        *,
        using: str = "default",
        execute: Execute | None = None,
        executemany: ExecuteMany | None = None,
    ) -> None:
        self.session_id = session_id
        self.using = using
        self.sql: SessionSQL = statements(using)
        default_execute, default_executemany = _cursor_runners(using)
        self._execute = execute or default_execute
        self._executemany = executemany or default_executemany
        self._generation_row_ensured = False

    # ---- The writer lock ----------------------------------------------------------------

    def lock(self, *, bump: bool = False) -> int:
        """Serialise this session's writers; return its (possibly bumped) clear generation.

        Must run inside ``atomic()``: the lock is held until the transaction ends.
        """
        if bump:
            return int(self._execute(self.sql.bump_generation, [self.session_id])[0][0])
        self._ensure_generation_row()
        return int(self._execute(self.sql.writer_lock, [self.session_id])[0][0])

    def lock_with_current_turn(self, branch_id: str) -> tuple[int, int | None, bool]:
        """Lock, and read the branch's current turn under the lock.

        Returns:
            (clear generation, current user turn, whether the branch has rows). SQLite with
            ``IMMEDIATE`` transactions reads both in one statement (BEGIN holds the lock).
        """
        sql, sid = self.sql, self.session_id
        if sql.generation_and_turn:
            self._ensure_generation_row()
            ((generation, turn, present),) = self._execute(
                sql.generation_and_turn, [sid, sid, branch_id, branch_id]
            )
            return int(generation), turn, present is not None
        generation = self.lock()
        newest = self._execute(sql.current_turn, [sid, branch_id, branch_id])
        return generation, (newest[0][0] if newest else None), bool(newest)

    def _ensure_generation_row(self) -> None:
        """SQLite (IMMEDIATE): create the session's generation row, as the SDK always has one.

        Once a transaction that did so commits, this writer skips the statement: nothing
        deletes that row (a clear bumps it), and a missing row reads as generation 0 anyway.
        """
        if self.sql.writer_lock_prelude and not self._generation_row_ensured:
            self._execute(self.sql.writer_lock_prelude, [self.session_id])
            transaction.on_commit(self._generation_row_committed, using=self.using)

    def _generation_row_committed(self) -> None:
        self._generation_row_ensured = True

    # ---- Branch ids ---------------------------------------------------------------------

    def reserve(self, branch_ids: Iterable[str]) -> None:
        """Reserve ``branch_ids`` for good (already reserved ids are left as they are)."""
        rows = [(self.session_id, branch) for branch in dict.fromkeys(branch_ids)]
        if len(rows) == 1:
            self._execute(self.sql.reserve_branch, rows[0])  # no executemany machinery
        elif rows:
            self._executemany(self.sql.reserve_branch, rows)

    def branches_with_rows(self) -> list[str]:
        """Every branch id with structure rows in this session (one index probe each)."""
        rows = self._execute(self.sql.session_branches, [self.session_id, self.session_id])
        return [branch for (branch,) in rows]

    def reserve_known_branches(self) -> None:
        """The SDK's backfill: reserve every branch that has rows (data written without
        reservations, e.g. by an older SDK)."""
        self.reserve(self.branches_with_rows())

    def is_reserved(self, branch_id: str) -> bool:
        return (
            BranchReservation.objects.using(self.using)
            .filter(session_id=self.session_id, branch_id=branch_id)
            .exists()
        )

    def reserve_new_branch(self, branch_name: str | None, turn_number: int, now: int) -> str:
        """Reserve a new branch id: ``branch_name``, or the SDK's generated name.

        Raises:
            ValueError: ``branch_name`` was used before in this session (the SDK's message).
        """
        if branch_name is not None:
            if self.is_reserved(branch_name):
                raise ValueError(
                    f"Branch ID '{branch_name}' has already been used. Choose a new branch ID."
                )
            self.reserve([branch_name])
            return branch_name
        base = f"branch_from_turn_{turn_number}_{now}"
        taken = set(
            BranchReservation.objects.using(self.using)
            .filter(session_id=self.session_id, branch_id__startswith=base)
            .values_list("branch_id", flat=True)
        )
        candidate, suffix = base, 1
        while candidate in taken:
            suffix += 1
            candidate = f"{base}_{suffix}"
        self.reserve([candidate])
        return candidate

    # ---- Items --------------------------------------------------------------------------

    def append(
        self, branch_id: str, payloads: Sequence[RawJSON], labels: Sequence[classify.ItemLabel]
    ) -> None:
        """Append serialised items to ``branch_id``, numbered as one batch.

        Touches the session row (created on the first write), inserts the messages, and gives
        each a structure row: sequence numbers after the session's highest, user turns and
        branch turns continuing the branch's.
        """
        sql, sid = self.sql, self.session_id
        self._execute(sql.touch_session, [sid])
        values = ", ".join([sql.insert_message_row] * len(payloads))
        params: list[Any] = []
        for payload in payloads:
            params += (sid, payload)
        inserted = self._execute(
            sql.insert_messages_head + values + sql.insert_messages_tail, params
        )
        # Ids rise in VALUES order; RETURNING's own row order is not guaranteed.
        message_ids = sorted(row[0] for row in inserted)
        ((seq, turn, branch_turn),) = self._execute(
            sql.next_numbers, [sid, sid, branch_id, branch_id]
        )
        if seq is None or (turn is None and branch_turn is None):
            # First rows on this branch: reserve its id, as the SDK's backfill would.
            self.reserve([branch_id])
        seq, turn, branch_turn = seq or 0, turn or 0, branch_turn or 0
        rows = []
        opened = 0
        for offset, (message_id, label) in enumerate(zip(message_ids, labels, strict=True), 1):
            opened += label.is_user
            rows.append(
                (
                    sid,
                    message_id,
                    branch_id,
                    label.message_type,
                    seq + offset,
                    turn + opened,
                    branch_turn + opened,
                    label.tool_name,
                )
            )
        self._executemany(sql.insert_structure, rows)

    def append_locked(
        self,
        branch_id: str,
        payloads: Sequence[RawJSON],
        labels: Sequence[classify.ItemLabel],
        *,
        expect: int | None,
        seen: int | None,
        current: str,
    ) -> int:
        """PostgreSQL: :meth:`lock` + the branch to act on + :meth:`append`, in one statement.

        ``forkview_append`` (migration 0007) runs exactly the statements of :meth:`lock` and
        :meth:`append`, server-side; each of them on a fresh snapshot, so the numbers are read
        after the lock is held, as here. It appends to ``branch_id`` unless the session's clear
        generation is no longer ``expect`` (a clear committed since the call): then to ``main``
        if the generation is also not ``seen`` (the caller's last seen one), else to
        ``current`` (``DjangoSession._write_target``'s rule). Returns the clear generation.
        Needs no ``atomic()``: one statement is one transaction (inside one, it holds the lock
        until that ends).
        """
        rows = self._execute(
            self.sql.append_function or "",
            [
                self.session_id,
                branch_id,
                expect,
                seen,
                current,
                [str(payload) for payload in payloads],
                [label.message_type for label in labels],
                [label.tool_name for label in labels],
                [bool(label.is_user) for label in labels],
            ],
        )
        return int(rows[0][0])

    def pop_locked(
        self, branch_id: str, *, expect: int | None, seen: int | None, current: str
    ) -> tuple[int, Any]:
        """PostgreSQL: :meth:`lock` + the branch to act on (as :meth:`append_locked`) +
        :meth:`pop`, in one statement (``forkview_pop``, migration 0007).

        Returns:
            (clear generation, the popped item or ``None``).
        """
        ((generation, data),) = self._execute(
            self.sql.pop_function or "", [self.session_id, branch_id, expect, seen, current]
        )
        return int(generation), (None if data is None else items.decode(data))

    def pop(self, branch_id: str) -> Any:
        """Remove the branch's newest item and return it (``None`` if the branch is empty).

        Rows whose message is missing or does not decode are removed and skipped, as the SDK
        does; the branch id stays reserved even if this empties the branch. Four statements
        (five when the turn empties), each one index probe, whatever the session's size.
        """
        sql, sid = self.sql, self.session_id
        self.reserve([branch_id])
        while True:
            rows = self._execute(sql.pop_newest, [sid, branch_id, branch_id])
            if not rows:
                return None
            row_id, message_id, turn, data = rows[0]
            self.remove_row(row_id=row_id, message_id=message_id, branch_id=branch_id, turn=turn)
            if data is None:
                continue
            try:
                return items.decode(data)
            except items.DecodeError:
                continue

    def remove_row(self, *, row_id: int, message_id: int, branch_id: str, turn: int | None) -> None:
        """Delete one structure row (the caller checked it is its branch's last), its message
        if no other row of the session uses it, and the usage of a turn it leaves empty."""
        sql, sid = self.sql, self.session_id
        self._execute(sql.delete_structure_row, [row_id])
        self._execute(sql.delete_message_if_unreferenced, [message_id, sid, message_id, sid])
        if turn is not None:
            self._execute(sql.delete_usage_if_turn_empty, [sid, branch_id, turn] * 2)
            self._execute(sql.delete_annotations_if_turn_empty, [sid, branch_id, turn] * 2)

    def delete_unreferenced_messages(self, message_ids: Sequence[int]) -> int:
        """Delete those of ``message_ids`` that no structure row of the session references.

        Messages are shared only between branches of one session, so the session's rows are
        the only possible references. The look-up always filters on the session:
        ``message_structure`` has no index on ``message_id`` (the SDK's schema, kept exactly),
        and the (session, ...) indexes keep it to this session's rows.
        """
        if not message_ids:
            return 0
        rows = self._structure()
        if len(message_ids) == 1:
            rows = rows.filter(message_id=message_ids[0])
        elif len(message_ids) < 100:
            rows = rows.filter(message_id__in=message_ids)
        still_used = set(rows.values_list("message_id", flat=True))
        orphans = [mid for mid in dict.fromkeys(message_ids) if mid not in still_used]
        messages = AgentMessage.objects.using(self.using).filter(session_id=self.session_id)
        deleted = 0
        for start in range(0, len(orphans), _DELETE_CHUNK):
            deleted += messages.filter(id__in=orphans[start : start + _DELETE_CHUNK]).delete()[0]
        return deleted

    def replace_item(self, message_id: int, item: Any) -> int:
        """Store ``item`` as message ``message_id`` and relabel its structure rows.

        The caller checked that whether it is a user message does not change (that would
        renumber every later turn). Returns the number of structure rows relabelled.
        """
        AgentMessage.objects.using(self.using).filter(
            session_id=self.session_id, id=message_id
        ).update(message_data=RawJSON(json.dumps(item)))
        label = classify.label(item)
        return (
            self._structure()
            .filter(message_id=message_id)
            .update(message_type=label.message_type, tool_name=label.tool_name)
        )

    def build_main_rows(self) -> StructureBuild:
        """Give messages without structure rows (plain ``SQLiteSession`` data) ``main`` rows.

        They are appended to ``main`` in id order, numbered as :meth:`append` numbers one
        batch. Messages whose JSON does not decode get no row (the SDK skips them too).
        """
        rows = self._structure()
        bare = list(
            AgentMessage.objects.using(self.using)
            .filter(session_id=self.session_id)
            .exclude(Exists(rows.filter(message_id=OuterRef("id"))))
            .order_by("id")
        )
        seq = rows.aggregate(seq=Max("sequence_number"))["seq"] or 0
        main = rows.filter(branch_id=MAIN_BRANCH).aggregate(
            turn=Max("user_turn_number"), branch_turn=Max("branch_turn_number")
        )
        turn, branch_turn = main["turn"] or 0, main["branch_turn"] or 0
        new_rows, skipped, opened = [], [], 0
        for message in bare:
            if items.is_undecodable(message.message_data):
                skipped.append(message.id)
                continue
            label = classify.label(message.message_data)
            opened += label.is_user
            seq += 1
            new_rows.append(
                MessageStructure(
                    session_id=self.session_id,
                    message_id=message.id,
                    branch_id=MAIN_BRANCH,
                    message_type=label.message_type,
                    sequence_number=seq,
                    user_turn_number=turn + opened,
                    branch_turn_number=branch_turn + opened,
                    tool_name=label.tool_name,
                    created_at=message.created_at,
                )
            )
        MessageStructure.objects.using(self.using).bulk_create(new_rows)
        if new_rows:
            self.reserve([MAIN_BRANCH])
        return StructureBuild(created=len(new_rows), skipped_undecodable=skipped)

    # ---- Branches -----------------------------------------------------------------------

    def copy_prefix(self, source: str, new_branch: str, turn_number: int, turn_start: int) -> int:
        """Copy the source rows of turns before ``turn_number`` to ``new_branch``.

        One ``INSERT ... SELECT``: the copy can be thousands of rows, and building model
        instances for them would cost more than the rest of the operation. ``turn_start``
        (the sequence number of the turn's user message) ends the index range: turn numbers
        never decrease along a branch, so every earlier turn lies before it, and the copy
        reads only the rows it copies instead of the whole source branch.
        """
        sid = self.session_id
        ((seq,),) = self._execute(self.sql.max_sequence, [sid])
        return int(
            self._execute(
                self.sql.copy_prefix, [new_branch, seq or 0, sid, source, turn_number, turn_start]
            )
        )

    def delete_branch(self, branch_id: str) -> tuple[int, int, int]:
        """Delete a branch's structure and usage rows and the messages only it held; its id
        stays reserved.

        Returns:
            (structure rows, usage rows, messages) deleted.

        Raises:
            ValueError: The branch has no rows (the SDK's message).
        """
        self.reserve([branch_id])
        branch_rows = self._structure().filter(branch_id=branch_id)
        message_ids = list(branch_rows.values_list("message_id", flat=True))
        if not message_ids:
            raise ValueError(f"Branch '{branch_id}' does not exist")
        usage_deleted = self._usage().filter(branch_id=branch_id).delete()[0]
        structure_deleted = branch_rows.delete()[0]
        messages_deleted = self.delete_unreferenced_messages(message_ids)
        reviews.follow_delete(session_id=self.session_id, branch_id=branch_id, using=self.using)
        trace_follow.follow_delete(
            session_id=self.session_id, branch_id=branch_id, using=self.using
        )
        return structure_deleted, usage_deleted, messages_deleted

    def rename_branch(self, old: str, new: str) -> int:
        """Move a branch's structure and usage rows to ``new``; both ids stay reserved.

        Returns:
            The number of structure rows moved.
        """
        self.reserve([old, new])
        moved = self._structure().filter(branch_id=old).update(branch_id=new)
        self._usage().filter(branch_id=old).update(branch_id=new)
        reviews.follow_rename(session_id=self.session_id, old=old, new=new, using=self.using)
        trace_follow.follow_rename(session_id=self.session_id, old=old, new=new, using=self.using)
        return moved

    # ---- Usage --------------------------------------------------------------------------

    def replace_turn_usage(self, branch_id: str, turn: int, usage: UsageRow) -> None:
        """The SDK's ``store_run_usage`` write: the turn's old row goes, a new one comes."""
        sql, sid = self.sql, self.session_id
        row = self._usage_params(branch_id, turn, usage)
        if sql.replace_turn_usage:
            self._execute(sql.replace_turn_usage, row)  # SQLite: the SDK's INSERT OR REPLACE
        else:
            self._execute(sql.delete_turn_usage, [sid, branch_id, turn])
            self._execute(sql.insert_turn_usage, row)

    def edit_turn_usage(self, branch_id: str, turn: int, usage: UsageRow) -> None:
        """A staff edit of a turn's usage: the row keeps its id and ``created_at``."""
        self._execute(self.sql.upsert_turn_usage, self._usage_params(branch_id, turn, usage))

    def _usage_params(self, branch_id: str, turn: int, usage: UsageRow) -> list[Any]:
        return [
            self.session_id,
            branch_id,
            turn,
            usage.requests,
            usage.input_tokens,
            usage.output_tokens,
            usage.total_tokens,
            usage.input_tokens_details,
            usage.output_tokens_details,
        ]

    # ---- The whole session --------------------------------------------------------------

    def clear(self) -> int:
        """Delete every item, branch and usage row; bump the clear generation (returned).

        Branch ids stay reserved, so every branch that had rows is reserved first.
        """
        generation = self.lock(bump=True)
        self.reserve_known_branches()
        for model in (TurnUsage, MessageStructure, AgentMessage, AgentSession):
            model.objects.using(self.using).filter(session_id=self.session_id).delete()
        reviews.follow_delete(session_id=self.session_id, using=self.using)
        trace_follow.follow_delete(session_id=self.session_id, using=self.using)
        return generation

    def _structure(self) -> MessageStructureQuerySet:
        return MessageStructure.objects.using(self.using).for_session(self.session_id)

    def _usage(self) -> TurnUsageQuerySet:
        return TurnUsage.objects.using(self.using).for_session(self.session_id)


# ---- Whole sessions written at once (import, duplicate) ----------------------------------------


def tree_write(*, tree: dict[str, Any], using: str) -> None:
    """Write a validated session tree (``conversations.exchange``) into an empty session.

    Runs inside the importer's transaction; the tree's rows are written as they are (the
    importer checked them), with new surrogate ids.
    """
    session_id = tree["session"]["session_id"]
    writer = SessionWriter(session_id, using=using)
    writer.lock()
    AgentSession.objects.using(using).create(
        session_id=session_id,
        created_at=items.parse_timestamp(tree["session"].get("created_at")),
        updated_at=items.parse_timestamp(tree["session"].get("updated_at")),
    )
    messages = sorted(tree["messages"], key=lambda m: m["ref"])
    created = AgentMessage.objects.using(using).bulk_create(
        [
            AgentMessage(
                session_id=session_id,
                message_data=items.stored_json(m.get("item"), m.get("undecodable")),
                created_at=items.parse_timestamp(m.get("created_at")),
            )
            for m in messages
        ]
    )
    ids = {m["ref"]: row.id for m, row in zip(messages, created, strict=True)}
    MessageStructure.objects.using(using).bulk_create(
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
                created_at=items.parse_timestamp(row.get("created_at")),
            )
            for row in tree["structure"]
        ]
    )
    TurnUsage.objects.using(using).bulk_create(
        [
            TurnUsage(
                session_id=session_id,
                branch_id=u["branch_id"],
                user_turn_number=u["user_turn_number"],
                requests=u.get("requests"),
                input_tokens=u.get("input_tokens"),
                output_tokens=u.get("output_tokens"),
                total_tokens=u.get("total_tokens"),
                input_tokens_details=items.stored_json(
                    u.get("input_tokens_details"), u.get("input_tokens_details_undecodable")
                ),
                output_tokens_details=items.stored_json(
                    u.get("output_tokens_details"), u.get("output_tokens_details_undecodable")
                ),
                created_at=items.parse_timestamp(u.get("created_at")),
            )
            for u in tree["usage"]
        ]
    )
    writer.reserve(tree.get("reservations") or [])
    generation = tree.get("clear_generation")
    generations = SessionClearGeneration.objects.using(using).filter(session_id=session_id)
    if generation is None:
        generations.delete()  # the lock above created it; the source had none
    else:
        generations.update(generation=generation)


def _row_copy(row: Model, **changes: Any) -> Any:
    """A new, unsaved row with ``row``'s column values (JSON exactly as stored) and ``changes``."""
    values = {}
    for f in row._meta.concrete_fields:
        if f.primary_key:
            continue
        value = getattr(row, f.attname)
        if isinstance(f, SDKJSONField) and value is not None:
            value = items.stored_json(value)
        values[f.attname] = value
    return type(row)(**{**values, **changes})


def session_copy(*, source: AgentSession, new_session_id: str, using: str) -> int:
    """Copy a whole session under a new id (messages with new ids, every branch, usage,
    reservations, the clear generation); timestamps unchanged. The caller checked that
    ``new_session_id`` is unused. Returns the number of messages copied."""
    session_id = source.session_id
    # The source's ids first (data written without reservations), main always among them.
    original = SessionWriter(session_id, using=using)
    original.lock()  # a consistent copy: no writer of the source runs meanwhile
    original.reserve([MAIN_BRANCH, *original.branches_with_rows()])
    writer = SessionWriter(new_session_id, using=using)
    writer.lock()
    AgentSession.objects.using(using).create(
        session_id=new_session_id, created_at=source.created_at, updated_at=source.updated_at
    )
    originals = list(AgentMessage.objects.using(using).filter(session_id=session_id).order_by("id"))
    copies = AgentMessage.objects.using(using).bulk_create(
        [_row_copy(m, session_id=new_session_id) for m in originals]
    )
    new_ids = {m.id: c.id for m, c in zip(originals, copies, strict=True)}
    structure = MessageStructure.objects.using(using).filter(session_id=session_id)
    MessageStructure.objects.using(using).bulk_create(
        [
            _row_copy(row, session_id=new_session_id, message_id=new_ids[row.message_id])
            for row in structure.order_by("sequence_number", "id")
            if row.message_id in new_ids
        ]
    )
    usage = TurnUsage.objects.using(using).filter(session_id=session_id).order_by("id")
    TurnUsage.objects.using(using).bulk_create(
        [_row_copy(u, session_id=new_session_id) for u in usage]
    )
    writer.reserve(
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
    SessionClearGeneration.objects.using(using).filter(session_id=new_session_id).update(
        generation=generation or 0
    )
    reviews.follow_copy(session_id=session_id, new_session_id=new_session_id, using=using)
    trace_follow.follow_copy(session_id=session_id, new_session_id=new_session_id, using=using)
    return len(copies)


def timestamps_set(
    *,
    session_id: str,
    structure: dict[int, Any],
    messages: dict[int, Any],
    usage: dict[int, Any],
    created_at: Any,
    updated_at: Any,
    using: str = "default",
) -> None:
    """Set a session's timestamps: ``created_at`` of its structure rows, messages and usage
    rows (each a map of row id to time) and the session's own ``created_at``/``updated_at``
    (``seed_demo`` spreads its history over past days). Rows the maps leave out keep theirs.
    Inside the caller's ``transaction.atomic()``, under the session's writer lock."""
    SessionWriter(session_id, using=using).lock()
    tables: list[tuple[Any, dict[int, Any]]] = [
        (MessageStructure, structure),
        (AgentMessage, messages),
        (TurnUsage, usage),
    ]
    for model, times in tables:
        rows = list(
            model._default_manager.using(using)
            .filter(session_id=session_id, pk__in=list(times))
            .only("pk")
        )
        for row in rows:
            row.created_at = times[row.pk]
        model._default_manager.using(using).bulk_update(rows, ["created_at"], batch_size=500)
    AgentSession.objects.using(using).filter(session_id=session_id).update(
        created_at=created_at, updated_at=updated_at
    )
