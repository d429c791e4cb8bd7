"""What an item says: the one vocabulary for an item's text, its stored JSON and its timestamps.

Every reader of ``agent_messages`` (the review pages, the exports, the admin, the agent tools,
the offline demo model) takes an item's text, decodes its stored JSON and formats its
timestamps through these functions, so the same item reads the same everywhere.

The rules:

- **Text of a content value** (a message's ``content``, a tool's ``output``, a reasoning
  ``summary``): a string as is; in a list of parts, a part's ``text`` (or its ``refusal``), a
  bare string as is, and any other part (images, files, audio) as a ``[type]`` marker; parts
  are joined by a blank line. Anything else is its JSON text; ``None`` is empty.
- **Stored JSON**: decoded with orjson's fast path and the standard library's rules (orjson
  refuses NaN, lone surrogates, huge integers and very deep nesting; ``json`` decides those),
  so every reader skips exactly the rows the SDK skips.
- **Display** (:func:`display_text`, :func:`display_value`): text that reaches a page, a JSON
  response or a download may hold what a database written by another program can hold: lone
  surrogates (text that cannot be encoded as UTF-8, e.g. from a JSON ``"\\ud800"`` escape),
  NUL and other control characters. Each such character is shown as U+FFFD (the replacement
  character); tab, newline and carriage return stay. Stored rows are never changed.
- **Timestamps**: the SDK's ``created_at`` is UTC text ``YYYY-MM-DD HH:MM:SS`` (a datetime on
  PostgreSQL); exports write ISO 8601 in UTC.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import orjson
from django.utils.dateparse import parse_datetime

from .fields import RawJSON, UndecodableJSON

__all__ = [
    "DISPLAY_DEPTH",
    "PART_JOINER",
    "REPLACEMENT",
    "DecodeError",
    "content_text",
    "decode",
    "decode_or_none",
    "display_text",
    "display_value",
    "dumps_pretty",
    "is_undecodable",
    "item_preview",
    "item_text",
    "iso_timestamp",
    "one_line",
    "parse_timestamp",
    "sdk_timestamp",
    "stored_json",
]

#: Between the parts of a content list (Markdown reads it as a paragraph break).
PART_JOINER = "\n\n"

#: What ``decode`` raises for text that is not JSON (or nests too deep to decode).
DecodeError = (json.JSONDecodeError, TypeError, RecursionError)


# ---- Display ----------------------------------------------------------------------------------

#: What an undisplayable character is shown as.
REPLACEMENT = "\ufffd"

# Lone surrogates (not encodable as UTF-8), C0 controls but tab / newline / carriage return,
# DEL and the C1 controls.
_UNDISPLAYABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def display_text(text: str) -> str:
    """``text`` safe to render, serialise and encode as UTF-8: every lone surrogate, NUL and
    control character (but tab, newline, carriage return) replaced by U+FFFD; never raises.

    Text without such characters is returned unchanged (the same object).
    """
    if _UNDISPLAYABLE.search(text) is None:
        return text
    return _UNDISPLAYABLE.sub(REPLACEMENT, text)


#: How deep :func:`display_value` walks a value before showing the rest as JSON text.
DISPLAY_DEPTH = 200


def display_value(value: Any) -> Any:
    """A decoded JSON value with :func:`display_text` applied to every string in it (keys
    too); never raises. Past :data:`DISPLAY_DEPTH` levels of nesting the rest is returned as
    its (displayable) JSON text."""
    return _display_value(value, 0)


def _display_value(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return display_text(value)
    if isinstance(value, dict | list | tuple) and depth >= DISPLAY_DEPTH:
        try:
            return display_text(json.dumps(value, ensure_ascii=False))
        except (TypeError, ValueError, RecursionError):
            return REPLACEMENT
    if isinstance(value, dict):
        return {display_text(str(k)): _display_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_display_value(v, depth + 1) for v in value]
    return value


# ---- Text -------------------------------------------------------------------------------------


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, dict):
        text = part.get("text")
        if isinstance(text, str):
            return text
        refusal = part.get("refusal")
        if isinstance(refusal, str):
            return refusal
        return f"[{part.get('type') or 'part'}]"
    return json.dumps(part, ensure_ascii=False)


def content_text(content: Any) -> str:
    """The text of a content value (see the module docstring); never raises."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return PART_JOINER.join(text for text in map(_part_text, content) if text)
    try:
        return json.dumps(content, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return str(content)


def item_text(item: Any) -> str:
    """Everything readable in an item, for search: its content, reasoning summary, tool
    name, arguments, query and output, one per line."""
    if not isinstance(item, dict):
        return content_text(item)
    parts = [content_text(item.get("content")), content_text(item.get("summary"))]
    for key in ("name", "arguments", "query", "output"):
        parts.append(content_text(item.get(key)))
    action = item.get("action")
    if isinstance(action, dict) and isinstance(action.get("query"), str):
        parts.append(action["query"])
    return "\n".join(part for part in parts if part)


def one_line(text: str, limit: int | None = None) -> str:
    """``text`` with newlines and runs of white space folded; cut to ``limit`` + ``...``."""
    folded = " ".join(text.split())
    if limit is not None and len(folded) > limit:
        return folded[:limit] + "..."
    return folded


def item_preview(item: Any, limit: int | None = None) -> str:
    """One line saying what an item is: its text, or ``name(arguments)`` for a call."""
    if isinstance(item, UndecodableJSON):
        return one_line(f"(undecodable) {item}", limit)
    if not isinstance(item, dict):
        text = content_text(item)
    elif "content" in item:
        text = content_text(item["content"])
    elif item.get("type") == "function_call":
        text = f"{item.get('name')}({item.get('arguments', '')})"
    elif "output" in item:
        text = content_text(item["output"])
    elif item.get("type") == "reasoning" and item.get("summary"):
        text = content_text(item["summary"])
    elif isinstance(item.get("action"), dict) and isinstance(item["action"].get("query"), str):
        text = f"{item.get('type')}: {item['action']['query']}"  # web_search_call and alike
    else:
        text = content_text(item)
    return one_line(text, limit)


# ---- Stored JSON ------------------------------------------------------------------------------


def decode(data: str | bytes) -> Any:
    """Stored JSON text as a value (orjson when it can, ``json`` when orjson refuses).

    Raises:
        json.JSONDecodeError: The text is not JSON (also ``TypeError`` for a non-text
            value and ``RecursionError`` for absurd nesting: catch :data:`DecodeError`).
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def decode_or_none(data: Any) -> Any:
    """A JSON column read raw (text on SQLite, decoded on PostgreSQL): its value, or
    ``None`` when it is empty or does not decode."""
    if data is None or data == "" or data == b"":
        return None
    if not isinstance(data, str | bytes):
        return data
    try:
        return decode(data)
    except DecodeError:
        return None


def is_undecodable(value: Any) -> bool:
    """Whether an ORM-read JSON value is stored text that did not decode."""
    return isinstance(value, UndecodableJSON)


def stored_json(value: Any, raw: str | None = None) -> RawJSON | None:
    """A value for a JSON column, written as the SDK writes it (``json.dumps``).

    ``raw`` (undecodable text kept by an export) and :class:`UndecodableJSON` values are
    written back byte for byte; ``None`` stays SQL ``NULL``.
    """
    if raw is not None:
        return RawJSON(raw)
    if isinstance(value, UndecodableJSON):
        return RawJSON(str(value))
    if value is None:
        return None
    return RawJSON(json.dumps(value))


def dumps_pretty(value: Any) -> str:
    """A value as indented JSON (keys in stored order, non-ASCII as is); never raises.

    A string holding JSON is shown decoded (tool arguments and outputs are JSON text);
    undecodable stored text is shown as it is.
    """
    if isinstance(value, UndecodableJSON):
        return str(value)
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except (ValueError, RecursionError):
            return value
        if isinstance(decoded, str):
            return decoded
        value = decoded
    try:
        return json.dumps(value, indent=2, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


# ---- Timestamps -------------------------------------------------------------------------------


def parse_timestamp(value: datetime | str | None) -> datetime | None:
    """A stored ``created_at`` (a datetime, the SDK's UTC text, or ISO 8601) as an aware
    datetime; ``None`` if absent or unreadable. Naive values are UTC, as the SDK writes."""
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed: datetime | None = value
    else:
        try:
            parsed = parse_datetime(str(value))
        except ValueError:
            return None
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def sdk_timestamp(value: datetime | str | None) -> str | None:
    """A ``created_at`` as the SDK returns it: UTC ``YYYY-MM-DD HH:MM:SS`` text (text that
    is already stored that way is returned unchanged)."""
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def iso_timestamp(value: datetime | str | None) -> str | None:
    """A ``created_at`` as ISO 8601 in UTC (the export format); ``None`` if unreadable."""
    parsed = parse_timestamp(value)
    return None if parsed is None else parsed.astimezone(UTC).isoformat()
