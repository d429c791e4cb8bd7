"""One branch out as text: JSONL items (ready for ``add_items``) or a Markdown transcript.

:func:`export_text` is the one entry point of the downloads and ``export_session``: it also
gives the whole JSON tree (:mod:`.tree`). Item texts, pretty JSON and timestamps are
``conversations.items``' own, so a transcript reads like the review pages.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.db import connections

from .. import classify, items
from ..models import MAIN_BRANCH, AgentMessage, AgentSession, MessageStructure, TurnUsage
from .snapshot import display_text, json_text, read_snapshot, timestamp_column
from .tree import tree_dumps, tree_export

__all__ = [
    "CONTENT_TYPES",
    "EXTENSIONS",
    "FORMATS",
    "branch_items",
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
    """The session in one of :data:`FORMATS` (the tree ignores ``branch_id``).

    Raises:
        AgentSession.DoesNotExist: No such session.
        ValueError: ``fmt`` is not one of :data:`FORMATS`.
    """
    if fmt == "json":
        return tree_dumps(tree_export(session_id=session_id, using=using))
    if fmt == "jsonl":
        return jsonl_export(session_id=session_id, branch_id=branch_id, using=using)
    if fmt == "markdown":
        return markdown_export(session_id=session_id, branch_id=branch_id, using=using)
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
    with read_snapshot(using):
        _session_must_exist(session_id, using)
        found = branch_items(session_id=session_id, branch_id=branch_id, using=using)
        if not found and not MessageStructure.objects.using(using).filter(session_id=session_id):
            found = [
                m
                for m in AgentMessage.objects.using(using)
                .filter(session_id=session_id)
                .order_by("id")
                .values_list("message_data", flat=True)
                if not items.is_undecodable(m)
            ]
    return "".join(json_text(json.dumps(item, ensure_ascii=False)) + "\n" for item in found)


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
    with read_snapshot(using):
        return display_text(_markdown(session_id, branch_id, using))


def _markdown(session_id: str, branch_id: str, using: str) -> str:
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
    rows = list(
        MessageStructure.objects.using(using)
        .filter(session_id=session_id, branch_id=branch_id)
        .order_by("sequence_number")
        .values_list("user_turn_number", "message__message_data")
    )
    usage = {
        u.user_turn_number: u
        for u in TurnUsage.objects.using(using)
        .filter(session_id=session_id, branch_id=branch_id)
        .defer("created_at")
    }
    lines = [f"# Session {stored_id}", "", f"Branch: `{branch_id}`"]
    started_at = items.iso_timestamp(session_created)
    if started_at:
        lines.append(f"Started: {started_at}")
    lines.append("")
    started, current = False, None

    def close_turn(turn: int | None) -> None:
        u = usage.get(turn) if turn is not None else None
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
        if items.is_undecodable(item):
            lines += ["_(an item whose stored JSON does not decode)_", ""]
            continue
        lines += [_markdown_item(item), ""]
    if started:
        close_turn(current)
    else:
        lines += ["_No items on this branch._", ""]
    return "\n".join(lines).rstrip("\n") + "\n"
