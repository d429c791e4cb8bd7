"""One branch out as text: JSONL items (ready for ``add_items``) or a Markdown transcript.

:func:`export_chunks` is the one entry point of the downloads and ``export_session`` (text in
pieces, rows read a few hundred at a time: memory flat in the session's size), and
:func:`export_text` the same as one string; both also give the whole JSON tree (:mod:`.tree`).
Item texts, pretty JSON and timestamps are ``conversations.items``' own, so a transcript reads
like the review pages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from django.db import connections

from .. import classify, items
from ..models import MAIN_BRANCH, AgentMessage, AgentSession, MessageStructure, TurnUsage
from .snapshot import ROWS_PER_FETCH, TextBatcher, display_text, read_snapshot, timestamp_column
from .tree import tree_chunks

__all__ = [
    "CONTENT_TYPES",
    "EXTENSIONS",
    "FORMATS",
    "branch_items",
    "export_chunks",
    "export_text",
    "jsonl_export",
    "markdown_export",
]

FORMATS = ("json", "jsonl", "markdown")
CONTENT_TYPES = {
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "markdown": "text/markdown; charset=utf-8",
}
EXTENSIONS = {"json": "json", "jsonl": "jsonl", "markdown": "md"}


def export_text(
    *, session_id: str, fmt: str, branch_id: str = MAIN_BRANCH, using: str = "default"
) -> str:
    """The session in one of :data:`FORMATS` (the tree ignores ``branch_id``), as one string:
    the whole export in memory. Downloads and ``export_session`` use :func:`export_chunks`.

    Raises:
        AgentSession.DoesNotExist: No such session.
        ValueError: ``fmt`` is not one of :data:`FORMATS`.
    """
    return "".join(export_chunks(session_id=session_id, fmt=fmt, branch_id=branch_id, using=using))


def export_chunks(
    *, session_id: str, fmt: str, branch_id: str = MAIN_BRANCH, using: str = "default"
) -> Iterator[str]:
    """:func:`export_text`'s text in pieces of about 64 KB, read in one snapshot with rows
    fetched a few hundred at a time: memory stays flat whatever the session's size.

    A generator: the snapshot stays open while it is consumed; the first ``next()`` raises
    for a missing session before any text is given (an unknown format raises at once).

    Raises:
        AgentSession.DoesNotExist: No such session.
        ValueError: ``fmt`` is not one of :data:`FORMATS`.
    """
    if fmt == "json":
        return tree_chunks(session_id=session_id, using=using)
    if fmt == "jsonl":
        return _jsonl_chunks(session_id, branch_id, using)
    if fmt == "markdown":
        return _markdown_chunks(session_id, branch_id, using)
    raise ValueError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


# ---- JSONL -----------------------------------------------------------------------------


def branch_items(
    *, session_id: str, branch_id: str = MAIN_BRANCH, using: str = "default"
) -> list[Any]:
    """A branch's decodable items in sequence order (what ``get_items`` returns)."""
    rows = (
        MessageStructure.objects.using(using)
        .filter(session_id=session_id, branch_id=branch_id)
        .order_by("sequence_number")
        .values_list("message__message_data", flat=True)
    )
    return [item for item in rows if item is not None and not items.is_undecodable(item)]


def jsonl_export(*, session_id: str, branch_id: str = MAIN_BRANCH, using: str = "default") -> str:
    """One item per line, ready for ``session.add_items([json.loads(line) for line in ...])``,
    read in one snapshot (lone surrogates and control characters as JSON escapes).

    Plain ``SQLiteSession`` data (no structure rows) exports its messages in id order.

    Raises:
        AgentSession.DoesNotExist: No such session.
    """
    return "".join(_jsonl_chunks(session_id, branch_id, using))


def _jsonl_chunks(session_id: str, branch_id: str, using: str) -> Iterator[str]:
    with read_snapshot(using):
        _session_must_exist(session_id, using)
        out = TextBatcher()
        found = False
        rows = (
            MessageStructure.objects.using(using)
            .filter(session_id=session_id, branch_id=branch_id)
            .order_by("sequence_number")
            .values_list("message__message_data", flat=True)
            .iterator(chunk_size=ROWS_PER_FETCH)
        )
        for item in rows:
            found = True
            if item is not None and not items.is_undecodable(item):
                yield from out.add(json.dumps(item, ensure_ascii=False) + "\n")
        if not found and not MessageStructure.objects.using(using).filter(session_id=session_id):
            for item in (
                AgentMessage.objects.using(using)
                .filter(session_id=session_id)
                .order_by("id")
                .values_list("message_data", flat=True)
                .iterator(chunk_size=ROWS_PER_FETCH)
            ):
                if not items.is_undecodable(item):
                    yield from out.add(json.dumps(item, ensure_ascii=False) + "\n")
        yield from out.flush()


def _session_must_exist(session_id: str, using: str) -> None:
    if not AgentSession.objects.using(using).filter(pk=session_id).exists():
        raise AgentSession.DoesNotExist(f"No session {session_id!r}")


# ---- Markdown --------------------------------------------------------------------------


def _fenced(text: str, lang: str = "") -> str:
    """``text`` in a code fence longer than any run of backticks inside it."""
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def _json_fenced(value: Any) -> str:
    """A value as indented JSON in a ``json`` fence."""
    # dumps_pretty reads a string as JSON text; here a string is a value: keep its quotes.
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else None
    return _fenced(text if text is not None else items.dumps_pretty(value), "json")


def _arguments_fenced(arguments: Any) -> str:
    """A call's arguments (JSON text): pretty JSON, or the text as it is if it is not JSON."""
    if isinstance(arguments, str):
        try:
            arguments = items.decode(arguments)
        except items.DecodeError:
            return _fenced(arguments)
    return _json_fenced(arguments)


def _markdown_item(item: Any) -> str:
    if not isinstance(item, dict):
        return _json_fenced(item)
    role = item.get("role")
    item_type = item.get("type")
    if role in ("user", "assistant", "system", "developer"):
        return f"**{role.capitalize()}:**\n\n{items.content_text(item.get('content'))}"
    if item_type == "function_call":
        name = classify.tool_name(item) or "?"
        call = f"**Tool call** `{name}` (call `{item.get('call_id')}`)"
        return f"{call}:\n\n{_arguments_fenced(item.get('arguments'))}"
    if item_type == "function_call_output":
        text = items.content_text(item.get("output"))
        return f"**Tool output** (call `{item.get('call_id')}`):\n\n{_fenced(text)}"
    if item_type == "reasoning":
        summary = items.content_text(item.get("summary"))
        return f"**Reasoning:**\n\n{summary or '(no summary)'}"
    label = classify.tool_name(item)
    title = f"**{item_type or 'Item'}**" + (f" `{label}`" if label else "")
    return f"{title}:\n\n{_json_fenced(item)}"


def markdown_export(
    *, session_id: str, branch_id: str = MAIN_BRANCH, using: str = "default"
) -> str:
    """A readable transcript of one branch: text, tool calls and outputs, usage per turn.

    Read in one snapshot; control characters and lone surrogates show as U+FFFD.

    Raises:
        AgentSession.DoesNotExist: No such session.
    """
    return "".join(_markdown_chunks(session_id, branch_id, using))


class _UsageByTurn:
    """The branch's usage rows, read in turn order alongside the items (which come in
    sequence order, where turns never decrease along a branch): one row in memory, not the
    branch's every turn. A turn asked for out of order is looked up on its own."""

    def __init__(self, session_id: str, branch_id: str, using: str) -> None:
        self.rows = (
            TurnUsage.objects.using(using)
            .filter(session_id=session_id, branch_id=branch_id)
            .order_by("user_turn_number")
            .values_list("user_turn_number", *_USAGE_FIELDS)
        )
        self.pending = self.rows.iterator(chunk_size=ROWS_PER_FETCH)
        self.current: tuple[Any, ...] | None = None
        self.last: int | None = None
        self.done = False

    def get(self, turn: int) -> tuple[Any, ...] | None:
        if self.last is not None and turn < self.last:
            return self.rows.filter(user_turn_number=turn).first()  # another writer's order
        self.last = turn
        while not self.done and (self.current is None or self.current[0] < turn):
            self.current = next(self.pending, None)
            self.done = self.current is None
        if self.current is not None and self.current[0] == turn:
            return self.current
        return None


_USAGE_FIELDS = ("requests", "input_tokens", "output_tokens", "total_tokens")


def _markdown_chunks(session_id: str, branch_id: str, using: str) -> Iterator[str]:
    with read_snapshot(using):
        vendor = connections[using].vendor
        found = (
            AgentSession.objects.using(using)
            .filter(pk=session_id)
            .values_list("session_id", timestamp_column("created_at", vendor))
            .first()
        )
        if found is None:
            raise AgentSession.DoesNotExist(f"No session {session_id!r}")
        stored_id, session_created = found
        out = TextBatcher(escape=display_text, one_final_newline=True)
        rows = (
            MessageStructure.objects.using(using)
            .filter(session_id=session_id, branch_id=branch_id)
            .order_by("sequence_number")
            .values_list("user_turn_number", "message__message_data")
            .iterator(chunk_size=ROWS_PER_FETCH)
        )
        usage = _UsageByTurn(session_id, branch_id, using)
        head = [f"# Session {stored_id}", "", f"Branch: `{branch_id}`"]
        started_at = items.iso_timestamp(session_created)
        if started_at:
            head.append(f"Started: {started_at}")
        # Each block is given as "\n" + block + "\n": the blank line between blocks comes
        # first, so the transcript ends in one line break (TextBatcher strips any more).
        yield from out.add("\n".join(head) + "\n")
        started, current = False, None

        def close_turn(turn: int | None) -> str:
            u = usage.get(turn) if turn is not None else None
            if u is None:
                return ""
            _, requests, input_tokens, output_tokens, total_tokens = u
            return (
                f"\n_Usage: {requests} request(s), {input_tokens} input + "
                f"{output_tokens} output = {total_tokens} tokens_\n"
            )

        for turn, item in rows:
            if not started or turn != current:
                if started:
                    yield from out.add(close_turn(current))
                started, current = True, turn
                heading = "Before the first user message" if not turn else f"Turn {turn}"
                yield from out.add(f"\n## {heading}\n")
            if items.is_undecodable(item):
                yield from out.add("\n_(an item whose stored JSON does not decode)_\n")
                continue
            yield from out.add("\n" + _markdown_item(item) + "\n")
        if started:
            yield from out.add(close_turn(current))
        else:
            yield from out.add("\n_No items on this branch._\n")
        yield from out.flush()
