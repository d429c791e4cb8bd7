"""Staff-facing writes on conversation data that keep the SDK's invariants.

The admin, the management commands and any future UI call these functions; none of them
writes rows on its own. Every function is keyword-only, typed, named ``<entity>_<action>``
and transactional. Writers of one session are serialised exactly like ``DjangoSession``'s
(the ``session_clear_generations`` row lock), so an edit never interleaves with a live run.

Staff edits and live chat turns exclude each other (``conversations.turnlocks``): an edit of
a branch (rename, delete, a row or usage edit on it) waits for a turn running on that branch;
an edit of the whole session (delete/clear, a message edit or delete, which may touch every
branch sharing the message, a duplicate into a new id) waits for the turns on every branch. The
wait is bounded (``FORKVIEW_STAFF_TURN_WAIT`` seconds, default 5); then the edit is refused
with a ``ServiceError`` saying a turn is running. While an edit runs, a new turn on what it
edits is told ``busy``.

Invariants kept (see ``/work/shared/docs/advanced-session-spec.md``):

- ``message_type`` / ``tool_name`` of structure rows are always ``classify.label(item)``;
- user turns are only opened by user messages, so an edit may not turn a user message into
  something else or the reverse (that would renumber every later turn);
- deletions only remove the *last* item of a branch (``pop_item`` semantics): deleting from
  the middle would leave a gap in the turn numbering that the SDK never produces;
- branch ids stay reserved forever; ``main`` can be neither deleted nor renamed;
- ``total_tokens == input_tokens + output_tokens`` for usage edited here.
"""

from __future__ import annotations

import contextlib
import difflib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import connections, transaction
from django.db.models import Exists, Model, OuterRef

from . import classify, items
from .fields import UndecodableJSON
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
from .turnlocks import TurnRunning, staff_exclusion
from .writes import SessionWriter, StructureBuild, UsageRow, session_copy

_Row = TypeVar("_Row", bound=Model)

#: ``structure_rebuild``'s result (kept under its old name for the admin and the tests).
StructureRebuild = StructureBuild

# ---- Error messages (module constants so tests and forms share them) -------------------

USER_TURN_CHANGE_ERROR = (
    "This edit would change whether the item is a user message. A user message opens a "
    "turn, so the change would renumber every later turn on {branches}. Keep the role "
    '("user" or not) unchanged, or branch the conversation in the live chat instead.'
)
NOT_LAST_ITEM_ERROR = (
    "Only the last item of a branch can be deleted (like the SDK's pop_item). "
    "This item is followed by {count} later item(s) on branch '{branch}'."
)
NOT_LAST_MESSAGE_ERROR = (
    "Only the newest message of a session without structure rows can be deleted "
    "(like SQLiteSession.pop_item)."
)
MAIN_RENAME_ERROR = "The 'main' branch cannot be renamed: every new session instance starts on it."
MAIN_DELETE_ERROR = "The 'main' branch cannot be deleted: every new session instance starts on it."
BRANCH_RESERVED_ERROR = (
    "Branch ID '{branch}' has already been used in this session. Branch ids stay reserved "
    "forever (also after a delete or a clear); choose a new one."
)
BRANCH_MISSING_ERROR = "Branch '{branch}' does not exist in session '{session}'."
BRANCH_BLANK_ERROR = "Branch ID cannot be empty."
SESSION_EXISTS_ERROR = "A session with id '{session}' already exists (or has reserved data)."
SESSION_MISSING_ERROR = "Session '{session}' does not exist."
NEGATIVE_COUNT_ERROR = "{field} cannot be negative."
MISSING_COUNT_ERROR = "{field} is required."
NO_TURN_ERROR = (
    "Branch '{branch}' of session '{session}' has no turn {turn}: usage belongs to an "
    "existing turn."
)
TOTAL_TOKENS_ERROR = (
    "total_tokens must equal input_tokens + output_tokens ({expected}); leave it empty to "
    "fill it in automatically."
)

VALID_ROLES = ("user", "assistant", "system", "developer")


class ServiceError(ValueError):
    """A refused edit; the message is meant for the staff user."""


# ---- Validation ------------------------------------------------------------------------


def item_problems(*, item: Any) -> list[str]:
    """What is wrong with an item as a Responses-API input item (``[]`` if nothing).

    Known shapes are checked (messages, function calls and their outputs); other ``type``s
    are accepted as long as the type is a string, so new SDK item kinds stay editable.
    """
    if not isinstance(item, dict):
        return [f"An item must be a JSON object, not {type(item).__name__}."]
    problems: list[str] = []
    item_type = item.get("type")
    role = item.get("role")
    if "type" in item and not isinstance(item_type, str):
        problems.append("'type' must be a string.")
    if role is None and item_type is None:
        problems.append("An item needs a 'role' (a message) or a 'type'.")
    if role is not None or item_type == "message":
        if role not in VALID_ROLES:
            problems.append(f"'role' must be one of {', '.join(VALID_ROLES)} (got {role!r}).")
        if item_type not in (None, "message"):
            problems.append(f"An item with a 'role' must have type 'message' (got {item_type!r}).")
        content = item.get("content")
        if content is None:
            problems.append("A message needs 'content' (a string or a list of parts).")
        elif not isinstance(content, str | list):
            problems.append("'content' must be a string or a list of parts.")
        elif isinstance(content, list) and not all(isinstance(p, dict) for p in content):
            problems.append("Every part of 'content' must be an object.")
    elif item_type == "function_call":
        for key in ("name", "call_id", "arguments"):
            if not isinstance(item.get(key), str):
                problems.append(f"A function_call needs '{key}' as a string.")
        if isinstance(item.get("name"), str) and not item["name"]:
            problems.append("A function_call's 'name' cannot be empty.")
    elif item_type == "function_call_output":
        if not isinstance(item.get("call_id"), str):
            problems.append("A function_call_output needs 'call_id' as a string.")
        if "output" not in item:
            problems.append("A function_call_output needs 'output'.")
        elif not isinstance(item["output"], str | list):
            problems.append("'output' must be a string or a list of content parts.")
    return problems


def json_diff(*, before: Any, after: Any) -> str:
    """A readable diff of two JSON values: changed top-level keys, then a unified diff."""
    lines: list[str] = []
    if isinstance(before, dict) and isinstance(after, dict):
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
        for title, keys in (("added", added), ("removed", removed), ("changed", changed)):
            if keys:
                lines.append(f"{title} keys: {', '.join(keys)}")
    old = _pretty(before).splitlines()
    new = _pretty(after).splitlines()
    lines += difflib.unified_diff(old, new, "before", "after", n=1, lineterm="")
    return "\n".join(lines)


def _pretty(value: Any) -> str:
    if isinstance(value, UndecodableJSON):
        return str(value)
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


# ---- Helpers ---------------------------------------------------------------------------


def _writer(session_id: str, using: str) -> SessionWriter:
    """The session's write primitives, with its writer lock taken (inside ``atomic``)."""
    writer = SessionWriter(session_id, using=using)
    writer.lock()
    return writer


def _get_locked(model: type[_Row], pk: int, using: str) -> tuple[_Row, SessionWriter]:
    """Row ``pk`` of a per-session ``model``, and its session's writer (lock taken)."""
    obj = model._default_manager.using(using).get(pk=pk)
    session_id: str = obj.session_id  # type: ignore[attr-defined]  # every per-session model has it
    return obj, _writer(session_id, using)


@contextlib.contextmanager
def _no_live_turn(session_id: str, branch_ids: Iterable[str] | None, using: str) -> Iterator[None]:
    """Wait (bounded) for chat turns on ``branch_ids`` (``None``: every branch) to finish and
    keep new ones out while the edit runs; refuse with a ``ServiceError`` if they do not."""
    try:
        with staff_exclusion(session_id, branch_ids, using=using):
            yield
    except TurnRunning as exc:
        raise ServiceError(str(exc)) from None


def _session_of(model: type[Model], pk: int, using: str) -> str | None:
    """The session of row ``pk`` (read before locking; ``None`` if there is no such row)."""
    value: str | None = (
        model._default_manager.using(using).filter(pk=pk).values_list("session_id", flat=True)
    ).first()
    return value


def _refuse(problems: list[str]) -> None:
    """Refuse an edit for ``problems`` (all of them, in one message), if there are any."""
    if problems:
        raise ServiceError(" ".join(problems))


# ---- Messages and structure rows -------------------------------------------------------


@dataclass(frozen=True)
class MessageUpdate:
    """What ``message_update`` did: the diff and the structure rows it relabelled."""

    diff: str
    relabelled: int


def message_was_user(*, message: AgentMessage) -> bool:
    """Whether the stored message counts as a user message (opens a turn)."""
    data = message.message_data
    if isinstance(data, UndecodableJSON):
        return message.structure.filter(message_type="user").exists()
    return classify.is_user_message(data)


def message_update_problems(*, message: AgentMessage, item: Any) -> list[str]:
    """Every reason to refuse replacing ``message``'s item by ``item``."""
    problems = item_problems(item=item)
    if problems:
        return problems
    if classify.is_user_message(item) != message_was_user(message=message):
        branches = sorted(set(message.structure.values_list("branch_id", flat=True)))
        where = ", ".join(f"'{b}'" for b in branches) or "its branches"
        problems.append(USER_TURN_CHANGE_ERROR.format(branches=where))
    if connections[message._state.db or "default"].vendor == "postgresql" and "\\u0000" in (
        json.dumps(item)
    ):
        problems.append("PostgreSQL cannot store the NUL character (\\u0000) in an item.")
    return problems


def message_update(*, message_id: int, item: Any, using: str = "default") -> MessageUpdate:
    """Replace a message's item and re-derive its structure rows' labels.

    Raises:
        ServiceError: The item is invalid or would change the user-turn numbering.
    """
    session_id = _session_of(AgentMessage, message_id, using)
    if session_id is None:
        raise AgentMessage.DoesNotExist(f"No message {message_id}")
    with _no_live_turn(session_id, None, using), transaction.atomic(using=using):
        message, writer = _get_locked(AgentMessage, message_id, using)
        _refuse(message_update_problems(message=message, item=item))
        before = message.message_data
        relabelled = writer.replace_item(message_id, item)
    return MessageUpdate(diff=json_diff(before=before, after=item), relabelled=relabelled)


def message_delete_problems(*, message: AgentMessage) -> list[str]:
    """Why ``message`` cannot be deleted now (``[]`` if it can)."""
    rows = list(message.structure.values_list("branch_id", "sequence_number"))
    if not rows:
        newer = AgentMessage.objects.using(message._state.db).filter(
            session_id=message.session_id, id__gt=message.id
        )
        has_structure = MessageStructure.objects.using(message._state.db).filter(
            session_id=message.session_id
        )
        # An orphan in a structured session is on no branch: removing it changes nothing.
        if newer.exists() and not has_structure.exists():
            return [NOT_LAST_MESSAGE_ERROR]
        return []
    problems = []
    for branch, seq in rows:
        later = MessageStructure.objects.using(message._state.db).filter(
            session_id=message.session_id, branch_id=branch, sequence_number__gt=seq
        )
        count = later.count()
        if count:
            problems.append(NOT_LAST_ITEM_ERROR.format(count=count, branch=branch))
    return problems


def message_delete(*, message_id: int, using: str = "default") -> None:
    """Delete a message that is the last item of every branch holding it (pop semantics).

    Its structure rows go, and so does the usage of any turn this leaves empty.

    Raises:
        ServiceError: The message is followed by other items on some branch.
    """
    session_id = _session_of(AgentMessage, message_id, using)
    if session_id is None:
        raise AgentMessage.DoesNotExist(f"No message {message_id}")
    with _no_live_turn(session_id, None, using), transaction.atomic(using=using):
        message, writer = _get_locked(AgentMessage, message_id, using)
        _refuse(message_delete_problems(message=message))
        rows = list(message.structure.values_list("id", "branch_id", "user_turn_number"))
        writer.reserve({branch for _id, branch, _turn in rows})
        for row_id, branch, turn in rows:
            writer.remove_row(row_id=row_id, message_id=message_id, branch_id=branch, turn=turn)
        # A message on no branch (an orphan) goes the same way: nothing references it.
        writer.delete_unreferenced_messages([message_id])


def structure_row_delete_problems(*, row: MessageStructure) -> list[str]:
    later = MessageStructure.objects.using(row._state.db).filter(
        session_id=row.session_id, branch_id=row.branch_id, sequence_number__gt=row.sequence_number
    )
    count = later.count()
    if count:
        return [NOT_LAST_ITEM_ERROR.format(count=count, branch=row.branch_id)]
    return []


def structure_row_delete(*, row_id: int, using: str = "default") -> None:
    """Pop one structure row (the last of its branch), exactly like ``pop_item``.

    The message goes too when no other branch shares it; a turn left empty loses its usage.

    Raises:
        ServiceError: The row is not the last one of its branch.
    """
    where = (
        MessageStructure.objects.using(using)
        .filter(pk=row_id)
        .values_list("session_id", "branch_id")
        .first()
    )
    if where is None:
        raise MessageStructure.DoesNotExist(f"No structure row {row_id}")
    with _no_live_turn(where[0], [where[1]], using), transaction.atomic(using=using):
        row, writer = _get_locked(MessageStructure, row_id, using)
        _refuse(structure_row_delete_problems(row=row))
        writer.reserve([row.branch_id])
        writer.remove_row(
            row_id=row.pk,
            message_id=row.message_id,
            branch_id=row.branch_id,
            turn=row.user_turn_number,
        )


# ---- Usage -----------------------------------------------------------------------------


def usage_total_problems(
    *, input_tokens: int | None, output_tokens: int | None, total_tokens: int | None
) -> list[str]:
    expected = (input_tokens or 0) + (output_tokens or 0)
    if total_tokens is not None and total_tokens != expected:
        return [TOTAL_TOKENS_ERROR.format(expected=expected)]
    return []


def turn_usage_problems(
    *,
    requests: int | None,
    input_tokens: int | None,
    output_tokens: int | None,
    total_tokens: int | None,
) -> list[str]:
    """Every reason to refuse these counts for a turn (``[]`` if there is none)."""
    counts = {
        "requests": requests,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": total_tokens,
    }
    problems = [
        NEGATIVE_COUNT_ERROR.format(field=name)
        for name, value in counts.items()
        if value is not None and value < 0
    ]
    problems += [
        MISSING_COUNT_ERROR.format(field=name)
        for name in ("requests", "input_tokens", "output_tokens")
        if counts[name] is None
    ]
    return problems + usage_total_problems(
        input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=total_tokens
    )


def turn_usage_save(
    *,
    session_id: str,
    branch_id: str,
    user_turn_number: int,
    requests: int,
    input_tokens: int,
    output_tokens: int,
    total_tokens: int | None,
    input_tokens_details: Any,
    output_tokens_details: Any,
    using: str = "default",
) -> TurnUsage:
    """Store a turn's usage as staff edited it, under the session's writer lock.

    A row already stored for the turn keeps its id and ``created_at``; ``total_tokens=None``
    means ``input_tokens + output_tokens``.

    Raises:
        ServiceError: A negative or missing count, a total that is not input + output, or a
            turn that has no items on the branch.
    """
    _refuse(
        turn_usage_problems(
            requests=requests,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=total_tokens,
        )
    )
    with _no_live_turn(session_id, [branch_id], using), transaction.atomic(using=using):
        writer = _writer(session_id, using)
        turn_rows = MessageStructure.objects.using(using).filter(
            session_id=session_id, branch_id=branch_id, user_turn_number=user_turn_number
        )
        if not turn_rows.exists():
            raise ServiceError(
                NO_TURN_ERROR.format(branch=branch_id, session=session_id, turn=user_turn_number)
            )
        writer.edit_turn_usage(
            branch_id,
            user_turn_number,
            UsageRow(
                requests=requests,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                total_tokens=input_tokens + output_tokens if total_tokens is None else total_tokens,
                input_tokens_details=items.stored_json(input_tokens_details),
                output_tokens_details=items.stored_json(output_tokens_details),
            ),
        )
        return TurnUsage.objects.using(using).get(
            session_id=session_id, branch_id=branch_id, user_turn_number=user_turn_number
        )


# ---- Branches --------------------------------------------------------------------------


def branch_list(*, session_id: str, using: str = "default") -> list[dict[str, Any]]:
    """Branches with rows: ``branch_id``, ``message_count``, ``user_turns``, ``created_at``."""
    return list(MessageStructure.objects.using(using).for_session(session_id).branch_summaries())


def branch_delete(*, session_id: str, branch_id: str, using: str = "default") -> None:
    """Delete a branch with its usage; its id stays reserved (``DjangoSession.delete_branch``
    with ``force=True``: live instances on it keep their branch and find it empty).

    Raises:
        ServiceError: ``main``, a blank id or a branch without rows (the SDK's messages).
    """
    if not branch_id or not branch_id.strip():
        raise ServiceError("Branch ID cannot be empty")
    if branch_id == MAIN_BRANCH:
        raise ServiceError(MAIN_DELETE_ERROR)
    with _no_live_turn(session_id, [branch_id], using), transaction.atomic(using=using):
        try:
            _writer(session_id, using).delete_branch(branch_id)
        except ValueError as exc:
            raise ServiceError(str(exc)) from exc
        PreferredBranch.objects.using(using).filter(
            session_id=session_id, branch_id=branch_id
        ).delete()


def branch_rename(*, session_id: str, old: str, new: str, using: str = "default") -> int:
    """Rename a branch: its structure and usage rows move to ``new`` in one transaction.

    ``new`` must never have been used in the session (nor be ``main``); ``old`` stays
    reserved.

    Returns:
        The number of structure rows moved.

    Raises:
        ServiceError: ``old`` is ``main`` or missing, or ``new`` is blank or reserved.
    """
    if old == MAIN_BRANCH:
        raise ServiceError(MAIN_RENAME_ERROR)
    if not new or not new.strip():
        raise ServiceError(BRANCH_BLANK_ERROR)
    # ``new`` too: a turn on a not-yet-existing branch ``new`` would land on the moved rows.
    with _no_live_turn(session_id, [old, new], using), transaction.atomic(using=using):
        writer = _writer(session_id, using)
        rows = MessageStructure.objects.using(using).filter(session_id=session_id)
        if not rows.filter(branch_id=old).exists():
            raise ServiceError(BRANCH_MISSING_ERROR.format(branch=old, session=session_id))
        writer.reserve([MAIN_BRANCH, *writer.branches_with_rows()])
        if writer.is_reserved(new):
            raise ServiceError(BRANCH_RESERVED_ERROR.format(branch=new))
        moved = writer.rename_branch(old, new)
        PreferredBranch.objects.using(using).filter(session_id=session_id, branch_id=old).update(
            branch_id=new
        )
    return moved


def branch_prefer(
    *, session_id: str, branch_id: str | None, user: Any = None, using: str = "default"
) -> PreferredBranch | None:
    """Mark the branch the review pages open first; ``branch_id=None`` clears the mark.

    Returns:
        The preference, or ``None`` once cleared.

    Raises:
        ServiceError: The branch has no rows in the session.
    """
    preferences = PreferredBranch.objects.using(using)
    if branch_id is None:
        preferences.filter(session_id=session_id).delete()
        return None
    rows = MessageStructure.objects.using(using).filter(session_id=session_id)
    if not rows.filter(branch_id=branch_id).exists():
        raise ServiceError(BRANCH_MISSING_ERROR.format(branch=branch_id, session=session_id))
    preference, _created = preferences.update_or_create(
        session_id=session_id,
        defaults={"branch_id": branch_id, "marked_by": user if user and user.pk else None},
    )
    return preference


# ---- Sessions --------------------------------------------------------------------------


def session_delete(*, session_id: str, using: str = "default") -> None:
    """Delete a session's items, branches and usage like ``clear_session``.

    Branch ids stay reserved and live instances of the session fall back to ``main``.
    """
    with _no_live_turn(session_id, None, using), transaction.atomic(using=using):
        SessionWriter(session_id, using=using).clear()
        PreferredBranch.objects.using(using).filter(session_id=session_id).delete()


def session_id_taken(*, session_id: str, using: str = "default") -> bool:
    """Whether any table holds data for ``session_id`` (a clear keeps reservations)."""
    return any(
        model._default_manager.using(using).filter(session_id=session_id).exists()
        for model in (AgentSession, AgentMessage, BranchReservation, SessionClearGeneration)
    )


def session_duplicate(*, session_id: str, new_session_id: str, using: str = "default") -> int:
    """Copy a whole session (messages with new ids, every branch, usage, reservations).

    Timestamps are copied unchanged, so the copy reads exactly like the original.

    Returns:
        The number of messages copied.

    Raises:
        ServiceError: The source is missing or ``new_session_id`` is blank or already used.
    """
    if not new_session_id or not new_session_id.strip():
        raise ServiceError("The new session id cannot be empty.")
    # The new id may be a live chat's brand-new session: wait for its turns. The source is
    # only read (and its branch ids reserved) under its writer lock.
    with _no_live_turn(new_session_id, None, using), transaction.atomic(using=using):
        source = AgentSession.objects.using(using).filter(pk=session_id).first()
        if source is None:
            raise ServiceError(SESSION_MISSING_ERROR.format(session=session_id))
        if session_id_taken(session_id=new_session_id, using=using):
            raise ServiceError(SESSION_EXISTS_ERROR.format(session=new_session_id))
        copied = session_copy(source=source, new_session_id=new_session_id, using=using)
        preference = PreferredBranch.objects.using(using).filter(session_id=session_id).first()
        if preference is not None:
            PreferredBranch.objects.using(using).create(
                session_id=new_session_id,
                branch_id=preference.branch_id,
                marked_by_id=preference.marked_by_id,
            )
    return copied


def structure_rebuild(*, session_id: str, using: str = "default") -> StructureBuild:
    """Give messages without structure rows (plain ``SQLiteSession`` data) ``main`` rows.

    The messages are appended to ``main`` in id order with the numbering
    ``DjangoSession.add_items`` would have given them in one batch: global sequence numbers
    after the session's highest, and turns continuing ``main``'s. Messages whose JSON does not
    decode are left without rows (the SDK skips them too) and reported.
    """
    with _no_live_turn(session_id, [MAIN_BRANCH], using), transaction.atomic(using=using):
        return _writer(session_id, using).build_main_rows()


# ---- Usage health ----------------------------------------------------------------------


@dataclass(frozen=True)
class TurnKey:
    session_id: str
    branch_id: str
    user_turn_number: int | None
    #: For a turn without usage: branches where the same user message has usage (a branch
    #: copy; the SDK never copies usage to the new branch).
    usage_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class UsageHealth:
    """User turns that have no usage row, and usage rows whose turn has no items."""

    turns_without_usage: list[TurnKey]
    usage_without_turns: list[TurnKey]

    @property
    def healthy(self) -> bool:
        return not self.turns_without_usage and not self.usage_without_turns


def usage_health(
    *, session_ids: Iterable[str] | None = None, using: str = "default"
) -> UsageHealth:
    """Compare ``turn_usage`` with the user turns of ``message_structure``.

    A user turn without usage is normal for conversations recorded without
    ``store_run_usage``; usage without any item in its turn is stale (a hand edit, or
    data written by a buggy writer).
    """
    turns = MessageStructure.objects.using(using).filter(message_type="user")
    usage = TurnUsage.objects.using(using).all()
    if session_ids is not None:
        ids = list(session_ids)
        turns = turns.filter(session_id__in=ids)
        usage = usage.filter(session_id__in=ids)
    has_usage = TurnUsage.objects.using(using).filter(
        session_id=OuterRef("session_id"),
        branch_id=OuterRef("branch_id"),
        user_turn_number=OuterRef("user_turn_number"),
    )
    has_turn = MessageStructure.objects.using(using).filter(
        session_id=OuterRef("session_id"),
        branch_id=OuterRef("branch_id"),
        user_turn_number=OuterRef("user_turn_number"),
    )
    fields = ("session_id", "branch_id", "user_turn_number")
    missing = list(
        turns.exclude(Exists(has_usage))
        .values_list(*fields, "message_id")
        .distinct()
        .order_by(*fields)
    )
    elsewhere: dict[int, set[str]] = {}
    message_ids = [row[3] for row in missing]
    for start in range(0, len(message_ids), 500):
        for message_id, branch in (
            MessageStructure.objects.using(using)
            .filter(message_id__in=message_ids[start : start + 500], message_type="user")
            .filter(Exists(has_usage))
            .values_list("message_id", "branch_id")
        ):
            elsewhere.setdefault(message_id, set()).add(branch)
    stale = usage.exclude(Exists(has_turn)).values_list(*fields).order_by(*fields)
    return UsageHealth(
        turns_without_usage=[
            TurnKey(row[0], row[1], row[2], usage_on=tuple(sorted(elsewhere.get(row[3], ()))))
            for row in missing
        ],
        usage_without_turns=[TurnKey(*row) for row in stale],
    )
