"""The shapes of the API's requests and answers (pydantic, via django-ninja's ``Schema``).

Answers are built from the review selectors' dataclasses and the review models; requests are
validated here first (types, lengths: 422 naming the field), then by ``conversations.reviews``
(meaning: 400 with the ``field``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ninja import Schema
from pydantic import ConfigDict, Field

from conversations.reviews import MAX_BODY_CHARS, MAX_TAG_CHARS

__all__ = [
    "AnnotationIn",
    "AnnotationOut",
    "AnnotationPage",
    "AnnotationPatch",
    "Error",
    "ReviewIn",
    "ReviewOut",
    "ScoreDefinitionOut",
    "SessionOut",
    "SessionPage",
    "ToolCallOut",
    "TurnItemOut",
    "TurnOut",
    "TurnPage",
    "TurnUsageOut",
    "UsageOut",
    "ValidationErrors",
]

#: The largest turn number (or page) accepted: far beyond any session, inside every integer column.
MAX_NUMBER = 2**31 - 1

ScoreValue = bool | int | float | str


class Error(Schema):
    """Every error: a message, and for a refused write the input at fault."""

    detail: str
    field: str | None = None


class ValidationError(Schema):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrors(Schema):
    """422: the request does not have the documented shape (``loc`` names the field)."""

    detail: list[ValidationError]


# ---- Sessions ---------------------------------------------------------------------------------


class SessionOut(Schema):
    session_id: str
    title: str
    turns: int
    branches: int
    total_tokens: int
    created_at: datetime | None
    updated_at: datetime | None
    url: str = Field(description="The session's review page.")


class SessionPage(Schema):
    items: list[SessionOut]
    page: int
    num_pages: int
    total: int
    sort: str


# ---- Turns and usage --------------------------------------------------------------------------


class ToolCallOut(Schema):
    call_id: str
    name: str
    kind: str
    arguments: str
    output: str | None
    status: str


class TurnItemOut(Schema):
    kind: str = Field(description="assistant, reasoning, tool, system or other.")
    text: str
    label: str
    tool: ToolCallOut | None


class TurnUsageOut(Schema):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    requests: int
    branch_id: str = Field(
        description="The branch whose usage row this is (an ancestor's for a turn shared with it)."
    )


class TurnOut(Schema):
    number: int
    user_text: str
    items: list[TurnItemOut]
    usage: TurnUsageOut | None
    shared_with_parent: bool
    branches_here: list[str] = Field(
        description="The branches that differ from this turn on (siblings), when it forks."
    )
    created_at: datetime | None
    url: str


class TurnPage(Schema):
    session_id: str
    branch_id: str
    items: list[TurnOut]
    page: int
    num_pages: int
    total: int = Field(description="The branch's number of turns.")


class UsageTurn(Schema):
    turn: int
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    cached_tokens: int | None
    reasoning_tokens: int | None
    owner: str | None
    missing: bool


class UsagePoint(Schema):
    turn: int
    tokens: int


class UsageLine(Schema):
    branch: str
    fork_turn: int
    current: bool
    points: list[UsagePoint]


class UsageToolCalls(Schema):
    turn: int
    tool: str
    calls: int


class UsageOut(Schema):
    """The data of the session page's charts (its ``usage.json``)."""

    session_id: str
    branch: str
    path_total_tokens: int
    missing_turns: list[int]
    per_turn: list[UsageTurn]
    cumulative: list[UsageLine]
    tool_calls: list[UsageToolCalls]


# ---- Annotations ------------------------------------------------------------------------------


class ScoreDefinitionOut(Schema):
    name: str
    kind: str = Field(description="boolean, numeric or categorical.")
    min_value: float | None
    max_value: float | None
    labels: list[str]
    description: str
    position: int
    archived: bool


class AnnotationOut(Schema):
    id: int
    kind: str = Field(description="score, comment or tag.")
    target: Literal["session", "branch", "turn"]
    session_id: str
    branch_id: str = Field(description='"" for the whole session.')
    turn: int = Field(description="0 for the whole branch (or session).")
    author: str | None = Field(description="The author's username (None: a deleted user).")
    definition: str | None = Field(description="A score's definition.")
    value: float | None = Field(description="A score: 1/0 thumbs, the number, a label's index.")
    label: str = Field(description="A categorical score's label, or the tag.")
    body: str = Field(description="A comment (markdown), or a score's comment.")
    created_at: datetime
    updated_at: datetime


class AnnotationPage(Schema):
    items: list[AnnotationOut]
    page: int
    num_pages: int
    total: int


class AnnotationIn(Schema):
    """A new annotation. The target: ``branch_id`` ``""`` (the session), a branch (``turn``
    0) or one of its user turns. A score needs ``definition`` and ``value`` (a thumbs score
    1/0 or true/false or "up"/"down"; a number in range; a categorical label or its index)
    and may carry a ``comment``; a comment needs ``body``; a tag needs ``label``. Scoring a
    target again changes your score."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["score", "comment", "tag"]
    branch_id: str = Field("", max_length=1000)
    turn: int = Field(0, ge=0, le=MAX_NUMBER)
    definition: str | None = Field(None, max_length=64)
    value: ScoreValue | None = None
    comment: str | None = Field(None, max_length=MAX_BODY_CHARS)
    body: str | None = Field(None, max_length=MAX_BODY_CHARS)
    label: str | None = Field(None, max_length=MAX_TAG_CHARS)


class AnnotationPatch(Schema):
    """A change to your own annotation: a score's ``value`` and ``body`` (its comment), a
    comment's ``body``, a tag's ``label``. What is left out stays."""

    model_config = ConfigDict(extra="forbid")

    value: ScoreValue | None = None
    body: str | None = Field(None, max_length=MAX_BODY_CHARS)
    label: str | None = Field(None, max_length=MAX_TAG_CHARS)


# ---- Review status ----------------------------------------------------------------------------


class ReviewOut(Schema):
    session_id: str
    status: str = Field(description="unreviewed, in_review, reviewed or needs_fix.")
    assignee: str | None
    updated_by: str | None
    updated_at: datetime | None


class ReviewIn(Schema):
    """Set the status and/or the assignee (a username; ``null`` unassigns). What is left out
    stays."""

    model_config = ConfigDict(extra="forbid")

    status: str | None = Field(None, max_length=32)
    assignee: str | None = Field(None, max_length=150)
