"""Text Forkview refuses to store: the one check every entry point that rejects bad text uses.

Stored text must survive every database and every page: UTF-8 encodable (no lone surrogates,
which SQLite stores and then cannot decode, and PostgreSQL refuses), no NUL (PostgreSQL text
cannot hold it), no other control characters (C0 except ``\\n``, ``\\t``, ``\\r``; DEL; C1),
which corrupt terminals, logs and exports, and no Unicode noncharacters (U+FDD0..U+FDEF,
U+xxFFFE, U+xxFFFF), which XML and some clients reject. Usage::

    from conversations.text import BAD_TEXT_ERROR, text_problem

    problem = text_problem(text)
    if problem is not None:
        raise ValueError(f"{BAD_TEXT_ERROR} ({problem})")
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

__all__ = ["BAD_TEXT_ERROR", "column_problem", "text_problem"]

#: The user-facing error when :func:`text_problem` finds something.
BAD_TEXT_ERROR: Final = (
    "Text contains characters that cannot be stored: lone surrogates, NUL, control "
    "characters (other than newline, tab and carriage return) or Unicode noncharacters."
)

_NONCHARACTERS = "\ufdd0-\ufdef" + "".join(
    f"{chr(plane * 0x10000 + 0xFFFE)}{chr(plane * 0x10000 + 0xFFFF)}" for plane in range(17)
)
# One pass over the text (a compiled character class): cheap enough for every message.
_BAD: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff" + _NONCHARACTERS + "]")


def _describe(char: str) -> str:
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        kind = "a lone surrogate (not encodable as UTF-8)"
    elif code == 0:
        kind = "NUL"
    elif unicodedata.category(char) == "Cc":
        kind = "a control character"
    else:
        kind = "a Unicode noncharacter"
    return f"{kind}, U+{code:04X}"


def text_problem(text: str) -> str | None:
    """What is wrong with ``text`` for storing it, or ``None`` when it is fine.

    Args:
        text: Any string (a message, a title, a tool output).

    Returns:
        ``None``, or a short description of the first bad character and where it is, e.g.
        ``"a lone surrogate (not encodable as UTF-8), U+D800 at character 1"``.
    """
    match = _BAD.search(text)
    if match is None:
        return None
    return f"{_describe(match.group())} at character {match.start() + 1}"


def column_problem(text: str) -> str | None:
    """Why a database text column cannot hold ``text`` (``None`` if it can): a NUL
    character (PostgreSQL refuses it) or a lone surrogate (PostgreSQL refuses it; SQLite
    stores it and then cannot decode the column). The narrow rule for what other writers
    (the SDK, imports) may store; :func:`text_problem` is the strict one for new text.
    """
    if "\x00" in text:
        return "a NUL character"
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate (not encodable as UTF-8)"
    return None
