"""Exports read one consistent snapshot of the database, and write text any reader can take.

**Snapshot.** An export reads several tables (the session, its messages, structure rows,
usage, reservations, ...) with one query each. Read outside a transaction, a turn committed
between two of those queries shows up half: its usage without its structure rows, or rows
whose messages were read before they existed. :func:`read_snapshot` runs every query of an
export in one read transaction:

- PostgreSQL: ``SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY`` as the first
  statement of the transaction, so every query sees the snapshot taken at the first one.
- SQLite: one ``BEGIN DEFERRED`` transaction. In WAL mode (``dashboard.settings`` sets it)
  a read transaction keeps the snapshot of its first ``SELECT`` until it ends and does not
  block writers. Forkview's connections begin transactions ``IMMEDIATE`` (writers take the
  write lock up front); a reader must not, or every export would block every chat turn, so
  the one transaction an export opens is begun ``DEFERRED``.

Inside a transaction the caller already opened (``tree_import`` compares a tree with the
stored session in its own transaction) the caller's transaction is the snapshot.

**Text.** Stored rows may hold text that is not valid Unicode: a lone surrogate from a JSON
``\\ud800`` escape (valid JSON; the SDK writes and reads it back), or bytes that are not UTF-8
(SQLite stores any bytes; an export reads them as U+FFFD). JSON output
(:func:`json_text`) writes lone surrogates, DEL and C1 control characters as ``\\uXXXX``
escapes, so the export stays lossless (a JSON reader gets the very value that is stored) and
encodes as UTF-8; the C0 controls are escaped by ``json.dumps`` itself. Text output
(:func:`display_text`, the Markdown transcript) shows them as U+FFFD.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import connections, transaction
from django.db.models import F, TextField
from django.db.models.expressions import Combinable
from django.db.models.functions import Cast

__all__ = [
    "CHUNK_CHARS",
    "ROWS_PER_FETCH",
    "TextBatcher",
    "display_text",
    "json_text",
    "read_snapshot",
    "timestamp_column",
]

#: What JSON output escapes besides what ``json.dumps`` escapes: DEL, C1 controls, surrogates.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\ud800-\udfff]")
#: What a text export shows as U+FFFD: C0 controls but tab, newline and carriage return,
#: DEL, C1 controls, surrogates.
_TEXT_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


@contextmanager
def read_snapshot(using: str = "default") -> Iterator[None]:
    """Run the block's queries on ``using`` in one read-only snapshot (module docstring)."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        if connection.in_atomic_block:
            yield
            return
        with transaction.atomic(using=using):
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield
        return
    connection.ensure_connection()
    raw = connection.connection
    factory = raw.text_factory
    raw.text_factory = _lenient_text
    try:
        if connection.in_atomic_block:
            yield
            return
        # transaction_mode is read when atomic() issues BEGIN; it is this thread's connection.
        mode = getattr(connection, "transaction_mode", None)
        connection.transaction_mode = "DEFERRED"  # type: ignore[attr-defined]
        try:
            with transaction.atomic(using=using):
                connection.transaction_mode = mode  # type: ignore[attr-defined]
                yield
        finally:
            connection.transaction_mode = mode  # type: ignore[attr-defined]
    finally:
        raw.text_factory = factory


def _lenient_text(value: bytes) -> str:
    """SQLite TEXT that is not UTF-8 (any writer may store such bytes) reads as U+FFFD
    instead of failing the whole query (``conversations.apps`` does the same for pages)."""
    return value.decode("utf-8", "replace")


def timestamp_column(name: str, vendor: str) -> Combinable:
    """A ``created_at``-style column to select: raw text on SQLite, where the value is any
    text another writer stored (Django's datetime converter fails on bytes that are not
    UTF-8 and on dates like ``2024-13-45``); the column itself elsewhere."""
    if vendor == "sqlite":
        return Cast(name, TextField())
    return F(name)


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def json_text(text: str) -> str:
    """JSON text (``json.dumps`` output, where such characters occur only inside strings)
    with lone surrogates, DEL and C1 controls as ``\\uXXXX`` escapes: same value, UTF-8-safe."""
    return _JSON_UNSAFE.sub(_escape, text)


def display_text(text: str) -> str:
    """Text for a transcript: control characters (but tab and line breaks) and lone
    surrogates shown as U+FFFD."""
    return _TEXT_UNSAFE.sub("\ufffd", text)


#: Rows fetched per round trip by the streaming exports (server-side cursors on PostgreSQL).
ROWS_PER_FETCH = 500
#: About this many characters per piece of a streamed export.
CHUNK_CHARS = 64 * 1024


class TextBatcher:
    """Joins small pieces of text into pieces of about :data:`CHUNK_CHARS`, each passed
    through ``escape`` (a per-character substitution, so the same on pieces as on the whole:
    :func:`json_text` or :func:`display_text`).

    ``one_final_newline``: the text ends in exactly one line break, as ``text.rstrip("\\n") +
    "\\n"`` would make it (trailing line breaks are held back until more text follows).
    """

    def __init__(
        self, escape: Callable[[str], str] = json_text, *, one_final_newline: bool = False
    ) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.escape = escape
        self.one_final_newline = one_final_newline

    def add(self, text: str) -> Iterator[str]:
        self.parts.append(text)
        self.size += len(text)
        if self.size >= CHUNK_CHARS:
            text = "".join(self.parts)
            held = ""
            if self.one_final_newline:
                body = text.rstrip("\n")
                text, held = body, text[len(body) :]
            self.parts, self.size = [held], len(held)
            if text:
                yield self.escape(text)

    def flush(self) -> Iterator[str]:
        """The rest (the end of the text)."""
        text = "".join(self.parts)
        self.parts, self.size = [], 0
        if self.one_final_newline:
            text = text.rstrip("\n") + "\n"
        if text:
            yield self.escape(text)
