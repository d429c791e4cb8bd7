"""The API's refusals: every one is JSON, ``{"detail": message}`` (+ ``"field"``)."""

from __future__ import annotations

from ninja.errors import HttpError

from conversations.text import column_problem

__all__ = ["ApiError", "NO_BRANCH", "NO_SESSION", "checked_text"]

NO_SESSION = "No such session."
NO_BRANCH = "No such branch in this session."


class ApiError(HttpError):
    """An answer other than 2xx with a message, and the input at fault (``field``)."""

    def __init__(self, status_code: int, message: str, *, field: str | None = None) -> None:
        super().__init__(status_code, message)
        self.field = field


def checked_text(value: str, field: str) -> str:
    """``value``, if a database column can hold it (no NUL, no lone surrogate); else 422."""
    problem = column_problem(value)
    if problem:
        raise ApiError(422, f"'{field}' holds {problem}.", field=field)
    return value
