"""The live chat's websocket protocol: its vocabulary, limits, and the SDK-event translation.

Everything a client can rely on (``docs/websocket-protocol.md``) is named here once: message
types, error texts, close codes, frame and text limits, the viewers' group name, and
:func:`protocol_event`, which turns one SDK stream event into the message the client sees.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from agents import ItemHelpers, MessageOutputItem
from agents.stream_events import StreamEvent

from conversations.text import BAD_TEXT_ERROR

__all__ = [
    "BRANCH_CREATED",
    "BUSY",
    "CANCEL",
    "CANCELLED",
    "CHAT_TURN_EXTRAS",
    "CLOSE_BAD_REQUEST",
    "CLOSE_FORBIDDEN",
    "CLOSE_UNAUTHENTICATED",
    "DELTA",
    "ERROR",
    "ERR_BAD_JSON",
    "ERR_BAD_TEXT",
    "ERR_BAD_TURN",
    "ERR_BUSY",
    "ERR_DATABASE",
    "ERR_EMPTY",
    "ERR_FORBIDDEN",
    "ERR_LISTEN_ONLY",
    "ERR_LOGGED_OUT",
    "ERR_NOTHING_TO_CANCEL",
    "ERR_TOO_LARGE",
    "ERR_TOO_MANY_TURNS",
    "ERR_UNKNOWN",
    "FORK",
    "LIVE_STATUS",
    "MAX_FRAME_BYTES",
    "MAX_ID_CHARS",
    "MAX_MESSAGE_BYTES",
    "MAX_TOOL_OUTPUT_CHARS",
    "MAX_TURN",
    "MESSAGE",
    "READY",
    "REGENERATE",
    "RETRY_HINT",
    "TOOL_CALL",
    "TOOL_OUTPUT",
    "TURN_COMPLETE",
    "USER_MESSAGE",
    "Message",
    "busy",
    "cancelled",
    "error",
    "group_name",
    "live_status",
    "protocol_event",
]

#: A protocol message: a JSON object with a ``type``.
Message = dict[str, Any]

# ---- Message types ---------------------------------------------------------------------------

# Client -> server.
USER_MESSAGE: Final = "user_message"
FORK: Final = "fork"
REGENERATE: Final = "regenerate"
#: Stop this socket's running turn (nothing of it is stored).
CANCEL: Final = "cancel"

# Server -> client.
READY: Final = "ready"
BRANCH_CREATED: Final = "branch_created"
DELTA: Final = "delta"
TOOL_CALL: Final = "tool_call"
TOOL_OUTPUT: Final = "tool_output"
MESSAGE: Final = "message"
TURN_COMPLETE: Final = "turn_complete"
#: Keys the chat's own ``turn_complete`` adds to the one viewers get: the stored turn rendered
#: as the session page renders it, its wall time and time to first token (ms), its cost in
#: words (``conversations.costs.describe``), and its trace id.
CHAT_TURN_EXTRAS: Final = ("html", "latency_ms", "ttft_ms", "cost", "trace_id")
#: The socket's turn was cancelled: stopped, nothing stored, the socket free for the next one.
CANCELLED: Final = "cancelled"
BUSY: Final = "busy"
ERROR: Final = "error"
#: Viewers' socket: ``{"type": "live_status", "live": false}`` when the channel layer (Redis)
#: stops carrying updates, ``true`` when it carries them again.
LIVE_STATUS: Final = "live_status"

# ---- Limits and close codes ------------------------------------------------------------------

#: A user message's text, UTF-8 encoded.
MAX_MESSAGE_BYTES: Final = 32 * 1024
#: A whole incoming frame (JSON escaping can double a message's size); checked before parsing.
MAX_FRAME_BYTES: Final = 2 * MAX_MESSAGE_BYTES
#: A session id in the URL, and a branch id (``?branch=``).
MAX_ID_CHARS: Final = 1024
#: The largest ``turn`` a ``fork`` / ``regenerate`` may name (a 32-bit column's range).
MAX_TURN: Final = 2**31 - 1
#: A tool's output in a ``tool_output`` message.
MAX_TOOL_OUTPUT_CHARS: Final = 4000

# Refusals accept, then close with one of these, so browsers can read the reason. An open
# socket whose user is no longer authorised (re-checked on every frame) gets an ``error``
# first, then the same codes: 4401 logged out / deactivated, 4403 permission withdrawn.
CLOSE_BAD_REQUEST: Final = 4400
CLOSE_UNAUTHENTICATED: Final = 4401
CLOSE_FORBIDDEN: Final = 4403

# ---- Error texts -----------------------------------------------------------------------------

ERR_EMPTY: Final = "Message is empty."
ERR_TOO_LARGE: Final = f"Message is too large (max {MAX_MESSAGE_BYTES // 1024} KB)."
ERR_BUSY: Final = "Another turn is already running on this branch; wait for it to finish."
ERR_UNKNOWN: Final = "Unknown message type."
ERR_BAD_JSON: Final = "Messages must be JSON objects."
ERR_BAD_TURN: Final = "'turn' must be a positive integer."
ERR_BAD_TEXT: Final = BAD_TEXT_ERROR
ERR_TOO_MANY_TURNS: Final = (
    "You already have the most chat turns running at once that you may ({limit}); "
    "wait for one to finish, then send again. Nothing was stored."
)
ERR_LISTEN_ONLY: Final = "This socket only sends session updates; it accepts no messages."
ERR_NOTHING_TO_CANCEL: Final = "No turn of this socket is running: there is nothing to cancel."
ERR_LOGGED_OUT: Final = "Your login has ended (logged out or deactivated); sign in again."
ERR_FORBIDDEN: Final = "You no longer have permission to use this socket."
RETRY_HINT: Final = "Nothing was stored; send again to retry."
ERR_DATABASE: Final = f"The database is unavailable right now. {RETRY_HINT}"


def error(text: str) -> Message:
    """An ``error`` message."""
    return {"type": ERROR, "message": text}


def busy() -> Message:
    """The ``busy`` message."""
    return {"type": BUSY, "message": ERR_BUSY}


def cancelled(session_id: str, branch_id: str) -> Message:
    """The ``cancelled`` message: the socket's turn on ``branch_id`` stopped, nothing stored."""
    return {"type": CANCELLED, "session_id": session_id, "branch_id": branch_id}


def live_status(live: bool) -> Message:
    """The viewers' ``live_status`` message."""
    return {"type": LIVE_STATUS, "live": live}


def group_name(session_id: str) -> str:
    """The Channels group of a session's viewers.

    Group names allow only ASCII letters, digits, ``-``, ``_`` and ``.`` (< 100 chars), and a
    session id is any string, so the name carries a hash of it.
    """
    return "forkview.session." + hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:40]


# ---- Stream events -> protocol messages --------------------------------------------------------


def _get(raw: Any, key: str, default: Any = None) -> Any:
    """``raw[key]`` of a dict item, ``raw.key`` of a model object."""
    return raw.get(key, default) if isinstance(raw, dict) else getattr(raw, key, default)


def _json_text(value: Any) -> str:
    """A value as the protocol sends it: text as is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def protocol_event(event: StreamEvent) -> Message | None:
    """The websocket message for one SDK stream event, or ``None`` to skip it."""
    if event.type == "raw_response_event":
        if event.data.type == "response.output_text.delta":
            return {"type": DELTA, "text": event.data.delta}
        return None
    if event.type != "run_item_stream_event":
        return None
    raw = event.item.raw_item
    if event.name == "tool_called":
        arguments = _get(raw, "arguments", None)
        if arguments is None:
            arguments = _get(raw, "action", None) or _get(raw, "input", "") or ""
        return {
            "type": TOOL_CALL,
            "call_id": _get(raw, "call_id") or _get(raw, "id"),
            "name": _get(raw, "name") or _get(raw, "type", "tool"),
            "arguments": _json_text(arguments),
        }
    if event.name == "tool_output":
        output = getattr(event.item, "output", None)
        return {
            "type": TOOL_OUTPUT,
            "call_id": _get(raw, "call_id") or _get(raw, "id"),
            "output": _json_text(output)[:MAX_TOOL_OUTPUT_CHARS],
        }
    if event.name == "message_output_created" and isinstance(event.item, MessageOutputItem):
        return {"type": MESSAGE, "text": ItemHelpers.text_message_output(event.item)}
    return None
