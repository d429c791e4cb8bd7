"""The shapes of the API's requests and answers (pydantic, via django-ninja's ``Schema``).

Answers are built from the review selectors' dataclasses and the review models; requests are
validated here first (types, lengths: 422 naming the field), then by ``conversations.reviews``
(meaning: 400 with the ``field``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ninja import Schema
from pydantic import ConfigDict, Field

from conversations.costs import CostTotal, describe
from conversations.reviews import MAX_BODY_CHARS, MAX_TAG_CHARS

__all__ = [
    "AnnotationIn",
    "AnnotationOut",
    "AnnotationPage",
    "AnnotationPatch",
    "CostOut",
    "CostTotalOut",
    "Error",
    "ReviewIn",
    "ReviewOut",
    "ScoreDefinitionOut",
    "SessionOut",
    "SessionPage",
    "SpanOut",
    "ToolCallOut",
    "TraceOut",
    "TurnItemOut",
    "TurnOut",
    "TurnPage",
    "TurnTraceOut",
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
    cost: CostTotalOut | None = Field(
        None,
        description="What the session's traced model calls cost (every branch, as recorded); "
        "null when no model call was traced.",
    )
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
    cost_usd: float | None = Field(None, description="The turn's traced model calls (USD).")
    cost: str = Field("", description='The same in words ("$0.0042", "free", "no price").')


class UsagePoint(Schema):
    turn: int
    tokens: int


class UsageCostPoint(Schema):
    turn: int
    usd: float


class UsageLine(Schema):
    branch: str
    fork_turn: int
    current: bool
    points: list[UsagePoint]
    cost_points: list[UsageCostPoint] = Field(
        default_factory=list, description="Cumulative cost (USD), like points."
    )


class UsageToolCalls(Schema):
    turn: int
    tool: str
    calls: int


class UsageOut(Schema):
    """The data of the session page's charts (its ``usage.json``)."""

    session_id: str
    branch: str
    path_total_tokens: int
    path_cost_usd: float | None = Field(None, description="Priced traced turns along the path.")
    path_cost: str = Field("", description="The same in words, with what was not priced.")
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


# ---- Traces (issue 16) ------------------------------------------------------------------------


class CostOut(Schema):
    """What one model call cost (``conversations.costs``)."""

    usd: str | None = Field(
        description="US dollars as an exact decimal string; null: no price known for the model."
    )
    model: str | None
    free: bool = Field(description="The offline demo model: costs nothing.")
    text: str = Field(description='For people: "$0.0042", "free", "no price".')


class CostTotalOut(Schema):
    """The sum of a trace's (or a turn's) model calls."""

    usd: str = Field(description="US dollars (exact decimal string) of the priced calls.")
    priced: int
    unpriced: int = Field(description="Model calls with no known price (not in usd).")
    free: int
    text: str = Field(description='"$0.0042", "$0.01 (1 no price)", "free", "no price", "".')


def cost_total_out(summed: CostTotal) -> dict[str, Any]:
    """A :class:`CostTotal` as :class:`CostTotalOut` says."""
    return {
        "usd": str(summed.usd),
        "priced": summed.priced,
        "unpriced": summed.unpriced,
        "free": summed.free,
        "text": describe(summed),
    }


class SpanOut(Schema):
    span_id: str
    parent_id: str | None = Field(description="null: directly under the trace.")
    kind: str = Field(
        description="agent, task, turn, response, generation, function, handoff, guardrail, "
        "custom, mcp_tools, transcription, speech, speech_group or other."
    )
    name: str = Field(description="The agent, tool or guardrail; the model of a model call.")
    started_at: datetime | None
    ended_at: datetime | None
    duration_ms: float | None
    error: Any = Field(description='{"message", "data"}, or null.')
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    cached_input_tokens: int | None
    reasoning_tokens: int | None
    data: Any = Field(description="The span's export, after the data policy (docs/tracing.md).")
    cost: CostOut | None = Field(description="Model calls (response, generation) only.")


class TraceOut(Schema):
    trace_id: str
    workflow_name: str
    group_id: str | None
    metadata: Any
    started_at: datetime | None
    ended_at: datetime | None
    duration_ms: float | None
    cost: CostTotalOut
    spans: list[SpanOut] = Field(description="By start, then id.")


class TurnTraceOut(Schema):
    """A turn's traces (usually one: the run that answered it) with their spans."""

    session_id: str
    branch_id: str
    turn: int
    owner_branch: str = Field(
        description="The branch whose run wrote the turn (an ancestor's for a shared turn): "
        "its traces are the turn's."
    )
    traced: bool = Field(description="false: the turn was recorded without a trace.")
    note: str | None = Field(description="Why there is no trace, when there is none.")
    cost: CostTotalOut
    truncated: bool = Field(description="More spans than one answer holds; the rest left out.")
    traces: list[TraceOut] = Field(description="By start, then id; [] when not traced.")
