"""Datasets from many sessions: fine-tuning JSONL, evaluation JSONL, a CSV of annotations.

Three formats (:data:`FORMATS`), each read from a selection of sessions (all, or the ids a
subquery gives: the session list's filters, see ``conversations/views.py``):

- ``finetune``: the OpenAI chat fine-tuning format. One line per user turn of the chosen
  branch: ``{"messages": [...]}``, the history up to and including that turn's reply. The
  SDK's items (the Responses API's) become chat messages: a message item keeps its role
  (``developer`` becomes ``system``) and its text (:func:`conversations.items.content_text`);
  ``function_call`` items become the assistant's ``tool_calls``; ``function_call_output``
  items ``tool`` messages; reasoning is left out, and so are items the chat format has no
  place for (hosted tool calls: web search, file search, computer use, ...). A turn whose
  reply does not end in assistant text (an interrupted turn) gives no line.
- ``eval``: one line per user turn: the ``input`` (the history before the reply), the
  ``reference`` answer (the reply's final assistant text, and all its messages), the turn's
  scores, comments and tags, and where it comes from (session, branch, turn).
- ``annotations``: every annotation of the selected sessions (any target, any branch), one
  CSV row each.

**The branch** (:class:`BranchChoice`): ``preferred`` (the session's preferred branch, else
``main``), ``best`` (the branch with the best average of a thumbs or numeric score
definition; sessions without such scores fall back to ``preferred``), or a branch by name
(sessions without it are left out, and counted).

**Memory** stays flat whatever the number of sessions: sessions are read
:data:`SESSIONS_PER_BATCH` at a time (a fixed number of queries per batch), their rows a few
hundred at a time, and only one branch's messages are held (a line is that history). Every
query of an export runs in one read-only snapshot (:func:`.snapshot.read_snapshot`).

**Hostile rows** never break an export: an item whose stored JSON does not decode, or that
is not a JSON object, or a call without an id, an output answering no call, is skipped and
counted in the :class:`DatasetReport`. JSON output escapes lone surrogates and control
characters (:func:`.snapshot.json_text`); CSV cells show them as U+FFFD and a cell that a
spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@`` first) starts with ``'``.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import Avg, Q, QuerySet

from .. import items
from ..models import (
    MAIN_BRANCH,
    AgentSession,
    Annotation,
    AnnotationKind,
    MessageStructure,
    PreferredBranch,
    ScoreDefinition,
    ScoreKind,
)
from .snapshot import ROWS_PER_FETCH, TextBatcher, display_text, read_snapshot

__all__ = [
    "CONTENT_TYPES",
    "CSV_COLUMNS",
    "DATASET_FORMATS",
    "EXTENSIONS",
    "SESSIONS_PER_BATCH",
    "BranchChoice",
    "ChatBuilder",
    "DatasetError",
    "DatasetReport",
    "dataset_chunks",
    "finetune_problems",
]

DATASET_FORMATS = ("finetune", "eval", "annotations")
CONTENT_TYPES = {
    "finetune": "application/x-ndjson",
    "eval": "application/x-ndjson",
    "annotations": "text/csv; charset=utf-8",
}
EXTENSIONS = {"finetune": "jsonl", "eval": "jsonl", "annotations": "csv"}
CSV_COLUMNS = (
    "session",
    "branch",
    "turn",
    "kind",
    "definition",
    "value",
    "label",
    "body",
    "author",
    "created_at",
)
#: Sessions read per batch (a fixed number of queries each).
SESSIONS_PER_BATCH = 100

#: The chat format's roles, and what a message item's role becomes.
ROLES = ("system", "user", "assistant", "tool")
_ROLE = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
#: Item types left out on purpose (not counted as skipped).
_SILENT = {"reasoning"}


class DatasetError(ValueError):
    """A dataset that cannot be made as asked (unknown format, unusable definition)."""


@dataclass(frozen=True)
class BranchChoice:
    """Which branch of each session a dataset reads: ``preferred``, ``best`` (by
    ``definition``) or ``named`` (``branch_id``)."""

    mode: str = "preferred"
    branch_id: str = ""
    definition: str = ""

    @classmethod
    def parse(cls, value: str | None, *, definition: str = "") -> BranchChoice:
        """``preferred`` (or empty), ``best`` (with ``definition``), ``best:<definition>``,
        or a branch name."""
        value = value or "preferred"
        if value == "preferred":
            return cls()
        if value == "best" or value.startswith("best:"):
            name = value[5:] if value.startswith("best:") else definition
            if not name:
                raise DatasetError("'best' needs a score definition to rank the branches by.")
            return cls(mode="best", definition=name)
        return cls(mode="named", branch_id=value)

    def describe(self) -> str:
        if self.mode == "best":
            return f"best by {self.definition}"
        return self.branch_id if self.mode == "named" else "preferred"


@dataclass
class DatasetReport:
    """What an export wrote and what it left out."""

    sessions_total: int = 0
    sessions_done: int = 0
    lines: int = 0
    #: Stored items that do not decode, are not JSON objects, or do not fit (a call
    #: without an id, an output answering no call).
    skipped_rows: int = 0
    #: Items the chat format has no place for (hosted tool calls and the like).
    unsupported_items: int = 0
    #: Turns whose reply does not end in assistant text.
    skipped_turns: int = 0
    #: Sessions without the chosen branch.
    missing_branches: int = 0

    def summary(self) -> str:
        return (
            f"{self.lines} line(s) from {self.sessions_done} session(s); left out: "
            f"{self.skipped_rows} bad row(s), {self.unsupported_items} unsupported item(s), "
            f"{self.skipped_turns} turn(s) without an answer, "
            f"{self.missing_branches} session(s) without the branch"
        )


# ---- Items -> chat messages ------------------------------------------------------------


def _arguments(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return "{}"


class ChatBuilder:
    """One branch's items, in order, as chat messages (see the module docstring).

    ``add`` takes an item; ``messages`` is the conversation so far, kept valid: a ``tool``
    message follows the assistant message whose ``tool_calls`` hold its id, and calls that
    were never answered are dropped from their message once another message follows.
    """

    def __init__(self, report: DatasetReport) -> None:
        self.messages: list[dict[str, Any]] = []
        self.report = report
        #: The latest assistant message's calls not answered yet.
        self.open_calls: set[str] = set()

    def _close_calls(self) -> None:
        """Before a message that is not a tool result: unanswered calls go."""
        if not self.open_calls:
            return
        for index in range(len(self.messages) - 1, -1, -1):
            message = self.messages[index]
            if message["role"] == "assistant" and "tool_calls" in message:
                calls = [c for c in message["tool_calls"] if c["id"] not in self.open_calls]
                if calls:
                    message["tool_calls"] = calls
                else:
                    del message["tool_calls"]
                    if not message.get("content"):
                        del self.messages[index]
                break
        self.open_calls = set()

    def add(self, item: Any) -> None:
        if items.is_undecodable(item) or not isinstance(item, dict):
            self.report.skipped_rows += 1
            return
        item_type = item.get("type")
        role = item.get("role")
        if role is not None and item_type in (None, "message"):
            self._message(role, item.get("content"))
        elif item_type == "function_call":
            self._call(item)
        elif item_type == "function_call_output":
            self._output(item)
        elif item_type not in _SILENT:
            self.report.unsupported_items += 1

    def _message(self, role: Any, content: Any) -> None:
        chat_role = _ROLE.get(role) if isinstance(role, str) else None
        if chat_role is None:
            self.report.skipped_rows += 1
            return
        text = items.content_text(content)
        if chat_role == "assistant" and not text.strip():
            return  # an empty assistant message says nothing (and the format refuses it)
        self._close_calls()
        self.messages.append({"role": chat_role, "content": text})

    def _call(self, item: dict[str, Any]) -> None:
        call_id, name = item.get("call_id"), item.get("name")
        if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
            self.report.skipped_rows += 1
            return
        call = {
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": _arguments(item.get("arguments", ""))},
        }
        last = self.messages[-1] if self.messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            self._close_calls()
            self.messages.append({"role": "assistant", "tool_calls": [call]})
        self.open_calls.add(call_id)

    def _output(self, item: dict[str, Any]) -> None:
        call_id = item.get("call_id")
        if not isinstance(call_id, str) or call_id not in self.open_calls:
            self.report.skipped_rows += 1
            return
        self.open_calls.discard(call_id)
        self.messages.append(
            {
                "role": "tool",
                "tool_call_id": call_id,
                "content": items.content_text(item.get("output")),
            }
        )

    def answered(self) -> bool:
        """Whether the conversation ends in assistant text (a line can end here)."""
        last = self.messages[-1] if self.messages else None
        return last is not None and last["role"] == "assistant" and bool(last.get("content"))

    def finished(self) -> list[dict[str, Any]]:
        """The messages so far as a finished conversation (unanswered calls dropped)."""
        self._close_calls()
        return self.messages


def finetune_problems(line: str) -> list[str]:
    """What is wrong with one fine-tuning line by the chat format's rules (empty: nothing).

    Each line a JSON object with ``messages``; roles system / user / assistant / tool;
    content strings; an assistant message has text or ``tool_calls``; a tool message
    follows the assistant message whose call it answers; at least one assistant message,
    and the last message is the assistant's.
    """
    try:
        data = json.loads(line)
    except ValueError:
        return ["not JSON"]
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        return ["not an object with a messages list"]
    messages = data["messages"]
    problems: list[str] = []
    calls: set[str] = set()  # the latest assistant message's call ids, while tools follow
    for n, message in enumerate(messages):
        if not isinstance(message, dict):
            problems.append(f"message {n} is not an object")
            continue
        role = message.get("role")
        if role not in ROLES:
            problems.append(f"message {n}: role {role!r}")
        if "content" in message and not isinstance(message["content"], str):
            problems.append(f"message {n}: content is not a string")
        if role != "tool":
            calls = set()
        if role == "assistant":
            tool_calls = message.get("tool_calls")
            if tool_calls is not None:
                if not isinstance(tool_calls, list) or not tool_calls:
                    problems.append(f"message {n}: tool_calls is not a list of calls")
                    tool_calls = []
                for call in tool_calls:
                    fn = call.get("function") if isinstance(call, dict) else None
                    if (
                        not isinstance(call, dict)
                        or call.get("type") != "function"
                        or not isinstance(call.get("id"), str)
                        or not isinstance(fn, dict)
                        or not isinstance(fn.get("name"), str)
                        or not isinstance(fn.get("arguments"), str)
                    ):
                        problems.append(f"message {n}: a malformed tool call")
                        continue
                    calls.add(call["id"])
            elif not message.get("content"):
                problems.append(f"message {n}: an empty assistant message without tool calls")
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in calls:
                problems.append(f"message {n}: a tool result for no preceding call ({call_id!r})")
            calls.discard(call_id)
        elif not isinstance(message.get("content"), str):
            problems.append(f"message {n}: no content")
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        problems.append("no assistant message")
    elif not isinstance(messages[-1], dict) or messages[-1].get("role") != "assistant":
        problems.append("the last message is not the assistant's")
    return problems


# ---- Choosing the branch -----------------------------------------------------------------


def _check_choice(choice: BranchChoice, using: str) -> None:
    if choice.mode == "best":
        kind = (
            ScoreDefinition.objects.using(using)
            .filter(name=choice.definition)
            .values_list("kind", flat=True)
            .first()
        )
        if kind is None:
            raise DatasetError(f"There is no score definition '{choice.definition}'.")
        if kind == ScoreKind.CATEGORICAL:
            raise DatasetError(
                f"'{choice.definition}' has categories, not a ranking: rank branches by a "
                "thumbs or numeric score."
            )
    if choice.mode == "named" and not choice.branch_id:
        raise DatasetError("Name the branch.")


def _branches(batch: list[str], choice: BranchChoice, using: str) -> dict[str, str]:
    """The chosen branch of each session of ``batch`` that has it (2 or 3 queries)."""
    existing: dict[str, set[str]] = defaultdict(set)
    for sid, branch in (
        MessageStructure.objects.using(using)
        .filter(session_id__in=batch)
        .order_by()
        .values_list("session_id", "branch_id")
        .distinct()
    ):
        existing[sid].add(branch)
    if choice.mode == "named":
        return {sid: choice.branch_id for sid in batch if choice.branch_id in existing[sid]}
    preferred = dict(
        PreferredBranch.objects.using(using)
        .filter(session_id__in=batch)
        .values_list("session_id", "branch_id")
    )
    chosen = {}
    for sid in batch:
        mark = preferred.get(sid)
        branch = mark if mark is not None and mark in existing[sid] else MAIN_BRANCH
        if branch in existing[sid]:
            chosen[sid] = branch
    if choice.mode == "best":
        best: dict[str, tuple[float, int, str]] = {}
        for sid, branch, average in (
            Annotation.objects.using(using)
            .filter(
                session_id__in=batch,
                kind=AnnotationKind.SCORE,
                definition__name=choice.definition,
            )
            .exclude(branch_id="")
            .order_by()
            .values("session_id", "branch_id")
            .annotate(average=Avg("value"))
            .values_list("session_id", "branch_id", "average")
        ):
            if branch not in existing[sid] or average is None:
                continue
            # The best average; on a tie main, then the branch named first.
            key = (float(average), int(branch == MAIN_BRANCH), branch)
            current = best.get(sid)
            if (
                current is None
                or (key[0], key[1]) > (current[0], current[1])
                or ((key[0], key[1]) == (current[0], current[1]) and branch < current[2])
            ):
                best[sid] = key
        chosen.update({sid: key[2] for sid, key in best.items()})
    return chosen


# ---- The export --------------------------------------------------------------------------


def _selected(sessions: QuerySet[Any, Any] | None, using: str) -> QuerySet[AgentSession]:
    qs = AgentSession.objects.using(using)
    return qs if sessions is None else qs.filter(session_id__in=sessions)


def dataset_chunks(
    *,
    fmt: str,
    branch: BranchChoice | None = None,
    sessions: QuerySet[Any, Any] | None = None,
    using: str = "default",
    report: DatasetReport | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Generator[str, None, None]:
    """The dataset as text in pieces of about 64 KB (a generator, in one read snapshot).

    Args:
        fmt: One of :data:`DATASET_FORMATS`.
        branch: Which branch of each session (``finetune`` and ``eval``); default preferred.
        sessions: A subquery of session ids (``None``: every session).
        report: Filled in as the export runs (what was written and left out).
        progress: Called with (sessions done, sessions selected) after each batch.

    Raises:
        DatasetError: An unknown format, or a branch choice that cannot work (at once).
    """
    if fmt not in DATASET_FORMATS:
        raise DatasetError(
            f"Unknown dataset format {fmt!r}; choose one of {', '.join(DATASET_FORMATS)}"
        )
    choice = branch or BranchChoice()
    if fmt != "annotations":
        _check_choice(choice, using)
    return _chunks(fmt, choice, sessions, using, report or DatasetReport(), progress)


def _batches(selected: QuerySet[AgentSession]) -> Iterator[list[str]]:
    last: str | None = None
    while True:
        qs = selected.order_by("session_id")
        if last is not None:
            qs = qs.filter(session_id__gt=last)
        batch = list(qs.values_list("session_id", flat=True)[:SESSIONS_PER_BATCH])
        if not batch:
            return
        yield batch
        last = batch[-1]


def _chunks(
    fmt: str,
    choice: BranchChoice,
    sessions: QuerySet[Any, Any] | None,
    using: str,
    report: DatasetReport,
    progress: Callable[[int, int], None] | None,
) -> Generator[str, None, None]:
    with read_snapshot(using):
        selected = _selected(sessions, using)
        report.sessions_total = selected.count()
        if progress is not None:
            progress(0, report.sessions_total)
        if fmt == "annotations":
            out = TextBatcher(escape=display_text)
            yield from out.add(_csv_line(CSV_COLUMNS))
        else:
            out = TextBatcher()
        for batch in _batches(selected):
            if fmt == "annotations":
                lines = _annotation_lines(batch, using)
            else:
                lines = _turn_lines(fmt, batch, choice, using, report)
            for line in lines:
                report.lines += 1
                yield from out.add(line)
            report.sessions_done += len(batch)
            if progress is not None:
                progress(report.sessions_done, report.sessions_total)
        yield from out.flush()


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) + "\n"


_NOTES_FIELDS = (
    "session_id",
    "branch_id",
    "turn",
    "kind",
    "definition__name",
    "value",
    "label",
    "body",
    "author__username",
    "created_at",
)


def _turn_notes(
    batch: list[str], branches: dict[str, str], using: str
) -> dict[tuple[str, str, int], dict[str, list[dict[str, Any]]]]:
    """The scores, comments and tags on the chosen branches' turns (one query)."""
    notes: dict[tuple[str, str, int], dict[str, list[dict[str, Any]]]] = {}
    rows = (
        Annotation.objects.using(using)
        .filter(session_id__in=batch, turn__gt=0)
        .order_by("session_id", "branch_id", "turn", "created_at", "id")
        .values_list(*_NOTES_FIELDS)
    )
    for sid, branch, turn, kind, definition, value, label, body, author, created in rows:
        if branches.get(sid) != branch:
            continue
        entry = notes.setdefault((sid, branch, turn), {"scores": [], "comments": [], "tags": []})
        when = created.isoformat() if created is not None else None
        if kind == AnnotationKind.SCORE:
            entry["scores"].append(
                {
                    "definition": definition,
                    "value": value,
                    "label": label or None,
                    "comment": body or None,
                    "author": author,
                }
            )
        elif kind == AnnotationKind.COMMENT:
            entry["comments"].append({"body": body, "author": author, "created_at": when})
        else:
            entry["tags"].append(label)
    return notes


def _turn_lines(
    fmt: str, batch: list[str], choice: BranchChoice, using: str, report: DatasetReport
) -> Iterator[str]:
    branches = _branches(batch, choice, using)
    report.missing_branches += len(batch) - len(branches)
    if not branches:
        return
    notes = _turn_notes(batch, branches, using) if fmt == "eval" else {}
    pairs = Q()
    for sid, branch in branches.items():
        pairs |= Q(session_id=sid, branch_id=branch)
    rows = (
        MessageStructure.objects.using(using)
        .filter(pairs)
        .order_by("session_id", "sequence_number")
        .values_list("session_id", "user_turn_number", "message__message_data")
        .iterator(chunk_size=ROWS_PER_FETCH)
    )
    chat: ChatBuilder | None = None
    current: tuple[str, int] | None = None
    reply_start = 0
    starting = False

    def close() -> Iterator[str]:
        """The line of the turn that just ended (if it was answered)."""
        if chat is None or current is None or current[1] <= 0:
            return
        if not chat.answered():
            report.skipped_turns += 1
            return
        sid, turn = current
        messages = chat.finished()
        if fmt == "finetune":
            yield _dumps({"messages": messages})
            return
        reply = messages[reply_start:]
        found = notes.get((sid, branches[sid], turn), {})
        yield _dumps(
            {
                "session_id": sid,
                "branch_id": branches[sid],
                "turn": turn,
                "input": messages[:reply_start],
                "reference": reply[-1]["content"],
                "reference_messages": reply,
                "scores": found.get("scores", []),
                "comments": found.get("comments", []),
                "tags": found.get("tags", []),
            }
        )

    for sid, turn, item in rows:
        turn = turn or 0
        if current is None or current[0] != sid or current[1] != turn:
            yield from close()
            if current is None or current[0] != sid:
                chat = ChatBuilder(report)
            current = (sid, turn)
            reply_start = len(chat.messages) if chat is not None else 0
            starting = True
        assert chat is not None
        if item is None:
            report.skipped_rows += 1
            continue
        before = len(chat.messages)
        chat.add(item)
        # The reply starts at the turn's first message that is not the user's (or system).
        if starting and len(chat.messages) > before:
            if chat.messages[-1]["role"] in ("user", "system"):
                reply_start = len(chat.messages)
            else:
                starting = False
    yield from close()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def _csv_line(values: tuple[Any, ...] | list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([_cell(v) for v in values])
    return buffer.getvalue()


def _annotation_lines(batch: list[str], using: str) -> Iterator[str]:
    rows = (
        Annotation.objects.using(using)
        .filter(session_id__in=batch)
        .order_by("session_id", "id")
        .values_list(*_NOTES_FIELDS)
        .iterator(chunk_size=ROWS_PER_FETCH)
    )
    for sid, branch, turn, kind, definition, value, label, body, author, created in rows:
        when = created.isoformat() if created is not None else None
        yield _csv_line([sid, branch, turn, kind, definition, value, label, body, author, when])
