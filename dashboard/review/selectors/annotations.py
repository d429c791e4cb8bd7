"""The review workflow on the session and compare pages: annotations, score summaries, status.

Read side only (every write goes through ``conversations.reviews``). One session's
annotations are read in ONE query (authors and definitions joined), then grouped in Python by
target: the session (``branch_id == ""``), a branch (``turn == 0``) or one turn of a branch.
With the active score definitions and the review row that is 3 queries whatever the number
of annotations, turns or branches (4 with the list of people a session can be assigned to).

Figures per score definition (:class:`ScoreStat`): a thumbs score as the share of thumbs up,
a numeric score as its mean, a categorical one as its most frequent label. A branch's figures
cover its own annotations (the branch and its turns); the session's cover everything.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db.models import Q

from conversations.models import (
    Annotation,
    AnnotationKind,
    ReviewStatus,
    ScoreDefinition,
    ScoreKind,
    SessionReview,
)
from conversations.permissions import ANNOTATE_CODENAME, APP_LABEL, can_annotate, can_moderate

__all__ = [
    "ASSIGNEE_LIMIT",
    "BranchScores",
    "Definition",
    "Note",
    "ReviewState",
    "ScoreComparison",
    "ScoreStat",
    "SessionAnnotations",
    "TargetNotes",
    "assignable_users",
    "definitions_get",
    "score_comparison",
    "score_stats",
    "session_annotations_get",
]

#: Most people offered in the assignee picker (annotators, by username).
ASSIGNEE_LIMIT = 200
#: Digit keys of the score bar: the first thumbs score takes 1 (up) and 2 (down), the other
#: active definitions 3, 4, ... in their order (position, name).
FIRST_EXTRA_KEY = 3


@dataclass(frozen=True, slots=True)
class Definition:
    """A score definition as the pages show it; ``key`` is its digit on the keyboard
    ("1" for the thumbs score: 1 up, 2 down), ``""`` when it has none (archived, or past 9)."""

    id: int
    name: str
    kind: str
    min_value: float | None
    max_value: float | None
    labels: tuple[str, ...]
    description: str
    archived: bool
    position: int = 0
    key: str = ""

    @property
    def is_boolean(self) -> bool:
        return self.kind == ScoreKind.BOOLEAN

    @property
    def is_numeric(self) -> bool:
        return self.kind == ScoreKind.NUMERIC

    @property
    def is_categorical(self) -> bool:
        return self.kind == ScoreKind.CATEGORICAL

    @property
    def range_text(self) -> str:
        if self.is_numeric and self.min_value is not None and self.max_value is not None:
            return f"{self.min_value:g}–{self.max_value:g}"
        if self.is_categorical:
            return " / ".join(self.labels)
        return "up / down"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "min_value": self.min_value,
            "max_value": self.max_value,
            "labels": list(self.labels),
            "description": self.description,
            "key": self.key,
        }


@dataclass(frozen=True, slots=True)
class Note:
    """One annotation (score, comment or tag) as shown; ``mine``: the viewer wrote it."""

    id: int
    kind: str
    branch_id: str
    turn: int
    author: str
    author_id: int | None
    definition: Definition | None
    value: float | None
    label: str
    body: str
    created_at: datetime | None
    updated_at: datetime | None
    mine: bool

    @property
    def value_text(self) -> str:
        """A score's value as text: up/down, the number, or the category."""
        if self.definition is None or self.value is None:
            return self.label
        if self.definition.is_boolean:
            return "up" if self.value >= 1 else "down"
        if self.definition.is_categorical:
            return self.label
        return f"{self.value:g}"

    @property
    def edited(self) -> bool:
        if self.created_at is None or self.updated_at is None:
            return False
        return (self.updated_at - self.created_at).total_seconds() > 1

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "branch_id": self.branch_id,
            "turn": self.turn,
            "author": self.author,
            "definition": self.definition.name if self.definition else None,
            "value": self.value,
            "label": self.label,
            "body": self.body,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "mine": self.mine,
        }


@dataclass(frozen=True, slots=True)
class ScoreStat:
    """The scores one definition received over some targets.

    ``mean``: the share of thumbs up (0..1) for a thumbs score, the mean for a numeric one,
    ``None`` for a categorical one (``top_label`` and ``label_counts`` say what was chosen).
    """

    definition: Definition
    count: int
    mean: float | None
    up: int = 0
    down: int = 0
    label_counts: tuple[tuple[str, int], ...] = ()

    @property
    def top_label(self) -> str:
        return self.label_counts[0][0] if self.label_counts else ""

    @property
    def percent(self) -> int | None:
        """Thumbs scores: the rounded share of thumbs up."""
        if not self.definition.is_boolean or self.mean is None:
            return None
        return round(self.mean * 100)

    @property
    def text(self) -> str:
        """``83% up``, ``3.5``, ``off-topic``: the figure shown in trees and summaries."""
        if self.definition.is_boolean:
            return f"{self.percent}% up"
        if self.definition.is_numeric and self.mean is not None:
            return f"{self.mean:.1f}".rstrip("0").rstrip(".")
        return self.top_label

    @property
    def title(self) -> str:
        name = self.definition.name
        if self.definition.is_boolean:
            return f"{name}: {self.up} up, {self.down} down ({self.count} score{_s(self.count)})"
        if self.definition.is_numeric:
            return (
                f"{name}: mean {self.text} of {self.count} score{_s(self.count)} "
                f"({self.definition.range_text})"
            )
        shares = ", ".join(f"{label} ×{n}" for label, n in self.label_counts)
        return f"{name}: {shares}"


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def score_stats(notes: Iterable[Note]) -> tuple[ScoreStat, ...]:
    """The figures of every definition scored among ``notes`` (definition order)."""
    by_definition: dict[int, list[Note]] = {}
    definitions: dict[int, Definition] = {}
    for note in notes:
        if note.kind != AnnotationKind.SCORE or note.definition is None or note.value is None:
            continue
        by_definition.setdefault(note.definition.id, []).append(note)
        definitions[note.definition.id] = note.definition
    stats = []
    for definition_id, scored in by_definition.items():
        definition = definitions[definition_id]
        values = [n.value for n in scored if n.value is not None]
        if definition.is_boolean:
            up = sum(1 for v in values if v >= 1)
            stats.append(ScoreStat(definition, len(values), up / len(values), up, len(values) - up))
        elif definition.is_numeric:
            stats.append(ScoreStat(definition, len(values), sum(values) / len(values)))
        else:
            counts = Counter(n.label for n in scored).most_common()
            stats.append(ScoreStat(definition, len(values), None, label_counts=tuple(counts)))
    order = {d.id: i for i, d in enumerate(sorted(definitions.values(), key=_definition_order))}
    return tuple(sorted(stats, key=lambda s: order[s.definition.id]))


def _definition_order(definition: Definition) -> tuple[bool, int, str]:
    """Score-bar order: active before archived, then position, then name."""
    return (definition.archived, definition.position, definition.name)


@dataclass(frozen=True)
class TargetNotes:
    """The annotations of one target: the session, a branch, or a turn of a branch."""

    branch_id: str
    turn: int
    scores: tuple[Note, ...] = ()
    comments: tuple[Note, ...] = ()
    tags: tuple[Note, ...] = ()

    @property
    def kind(self) -> str:
        if not self.branch_id:
            return "session"
        return "branch" if self.turn == 0 else "turn"

    @property
    def count(self) -> int:
        return len(self.scores) + len(self.comments) + len(self.tags)

    @property
    def stats(self) -> tuple[ScoreStat, ...]:
        return score_stats(self.scores)

    def mine(self, definition: Definition) -> Note | None:
        """The viewer's own score of ``definition`` on this target."""
        return next(
            (
                n
                for n in self.scores
                if n.mine and n.definition and n.definition.id == definition.id
            ),
            None,
        )

    def votes(self, definition: Definition) -> tuple[int, int]:
        """Thumbs up and down given on this target for ``definition``."""
        values = [
            n.value
            for n in self.scores
            if n.definition and n.definition.id == definition.id and n.value is not None
        ]
        up = sum(1 for v in values if v >= 1)
        return up, len(values) - up

    def as_json(self) -> dict[str, Any]:
        return {
            "branch_id": self.branch_id,
            "turn": self.turn,
            "scores": [n.as_json() for n in self.scores],
            "comments": [n.as_json() for n in self.comments],
            "tags": [n.as_json() for n in self.tags],
        }


@dataclass(frozen=True)
class BranchScores:
    """What a branch (its own annotations: the branch and its turns) or the session received."""

    branch_id: str
    scores: int
    comments: int
    tags: int
    stats: tuple[ScoreStat, ...]
    scored_turns: int = 0

    @property
    def count(self) -> int:
        return self.scores + self.comments + self.tags

    def stat(self, name: str) -> ScoreStat | None:
        return next((s for s in self.stats if s.definition.name == name), None)


@dataclass(frozen=True, slots=True)
class ReviewState:
    status: str
    status_label: str
    assignee: str  # username, "" when unassigned
    assignee_id: int | None
    updated_at: datetime | None
    updated_by: str

    @property
    def is_reviewed(self) -> bool:
        return self.status == ReviewStatus.REVIEWED


UNREVIEWED = ReviewState(
    status=ReviewStatus.UNREVIEWED,
    status_label=ReviewStatus.UNREVIEWED.label,
    assignee="",
    assignee_id=None,
    updated_at=None,
    updated_by="",
)


@dataclass(frozen=True)
class SessionAnnotations:
    """Everything the session and compare pages show of the review workflow.

    ``can_annotate``: the viewer may write (the pages show the write controls only then).
    ``can_moderate``: the viewer may delete other people's comments and tags (moderation).
    ``assignees``: ``(id, username)`` of the people a session can be assigned to (filled
    only for annotators, with ``with_assignees=True``).
    """

    session_id: str
    definitions: tuple[Definition, ...]
    review: ReviewState
    can_annotate: bool
    targets: Mapping[tuple[str, int], TargetNotes] = field(repr=False)
    branches: Mapping[str, BranchScores] = field(repr=False)
    summary: BranchScores
    assignees: tuple[tuple[int, str], ...] = ()
    can_moderate: bool = False
    statuses: tuple[tuple[str, str], ...] = tuple(ReviewStatus.choices)

    @property
    def thumbs(self) -> Definition | None:
        """The first thumbs score: one click on every turn (keys 1 and 2)."""
        return next((d for d in self.definitions if d.is_boolean), None)

    @property
    def others(self) -> tuple[Definition, ...]:
        """The active definitions after the thumbs score (keys 3, 4, ...)."""
        thumbs = self.thumbs
        return tuple(d for d in self.definitions if d is not thumbs)

    def target(self, branch_id: str = "", turn: int = 0) -> TargetNotes:
        return self.targets.get((branch_id, turn)) or TargetNotes(branch_id, turn)

    @property
    def session_notes(self) -> TargetNotes:
        return self.target("", 0)

    def branch(self, branch_id: str) -> BranchScores:
        return self.branches.get(branch_id) or BranchScores(branch_id, 0, 0, 0, ())

    @property
    def assignee_choices(self) -> tuple[tuple[int, str], ...]:
        """The assignee picker's people: annotators, and whoever is assigned now."""
        review = self.review
        if review.assignee_id is None or any(pk == review.assignee_id for pk, _ in self.assignees):
            return self.assignees
        return ((review.assignee_id, review.assignee), *self.assignees)

    def definitions_json(self) -> list[dict[str, Any]]:
        return [d.as_json() for d in self.definitions]

    @property
    def definitions_attr(self) -> str:
        """The definitions as JSON text for a ``data-`` attribute (the page's script reads
        them; no inline script, which the CSP forbids anyway)."""
        return json.dumps(self.definitions_json(), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class ScoreComparison:
    """One definition's figure on two branches, and which scored better (``"a"``, ``"b"``,
    ``""`` for a tie or when it cannot tell: a categorical score, or one side unscored)."""

    definition: Definition
    a: ScoreStat | None
    b: ScoreStat | None

    @property
    def better(self) -> str:
        if self.a is None or self.b is None or self.a.mean is None or self.b.mean is None:
            return ""
        if abs(self.a.mean - self.b.mean) < 1e-9:
            return ""
        return "a" if self.a.mean > self.b.mean else "b"


# ---- Reads --------------------------------------------------------------------------------


def _definition(row: ScoreDefinition, key: str = "") -> Definition:
    labels = row.labels if isinstance(row.labels, list) else []
    return Definition(
        id=row.pk,
        name=row.name,
        kind=row.kind,
        min_value=row.min_value,
        max_value=row.max_value,
        labels=tuple(str(label) for label in labels),
        description=row.description,
        archived=row.archived,
        position=row.position,
        key=key,
    )


def definitions_get() -> tuple[Definition, ...]:
    """The active score definitions in score-bar order, with their keys (1 query)."""
    rows = list(ScoreDefinition.objects.filter(archived=False).order_by("position", "name"))
    out: list[Definition] = []
    thumbs_seen = False
    extra = FIRST_EXTRA_KEY
    for row in rows:
        if row.kind == ScoreKind.BOOLEAN and not thumbs_seen:
            thumbs_seen = True
            out.append(_definition(row, "1"))
            continue
        key = str(extra) if extra <= 9 else ""
        extra += 1
        out.append(_definition(row, key))
    return tuple(out)


def assignable_users() -> tuple[tuple[int, str], ...]:
    """``(id, username)`` of active users who may annotate (1 query, at most
    :data:`ASSIGNEE_LIMIT`)."""
    users = get_user_model()._default_manager
    permission = Permission.objects.filter(
        content_type__app_label=APP_LABEL, codename=ANNOTATE_CODENAME
    )
    username = get_user_model().USERNAME_FIELD
    rows = (
        users.filter(is_active=True)
        .filter(
            Q(is_superuser=True)
            | Q(user_permissions__in=permission)
            | Q(groups__permissions__in=permission)
        )
        .distinct()
        .order_by(username)
        .values_list("pk", username)[:ASSIGNEE_LIMIT]
    )
    return tuple((pk, str(name)) for pk, name in rows)


def _review(session_id: str) -> ReviewState:
    row = (
        SessionReview.objects.filter(pk=session_id).select_related("assignee", "updated_by").first()
    )
    if row is None:
        return UNREVIEWED
    return ReviewState(
        status=row.status,
        status_label=ReviewStatus(row.status).label
        if row.status in ReviewStatus.values
        else row.status,
        assignee=row.assignee.get_username() if row.assignee else "",
        assignee_id=row.assignee_id,
        updated_at=row.updated_at,
        updated_by=row.updated_by.get_username() if row.updated_by else "",
    )


def _notes(
    session_id: str, user_id: int | None, active: Mapping[int, Definition], branches: Any
) -> list[Note]:
    rows = Annotation.objects.filter(session_id=session_id).select_related("author", "definition")
    if branches is not None:
        rows = rows.filter(branch_id__in=list(branches))
    notes = []
    for row in rows.order_by("created_at", "id"):
        definition = None
        if row.definition is not None:
            definition = active.get(row.definition.pk) or _definition(row.definition)
        notes.append(
            Note(
                id=row.pk,
                kind=row.kind,
                branch_id=row.branch_id,
                turn=row.turn,
                author=row.author.get_username() if row.author else "(deleted user)",
                author_id=row.author_id,
                definition=definition,
                value=row.value,
                label=row.label,
                body=row.body,
                created_at=row.created_at,
                updated_at=row.updated_at,
                mine=user_id is not None and row.author_id == user_id,
            )
        )
    return notes


def _branch_scores(branch_id: str, notes: Sequence[Note]) -> BranchScores:
    scores = [n for n in notes if n.kind == AnnotationKind.SCORE]
    return BranchScores(
        branch_id=branch_id,
        scores=len(scores),
        comments=sum(1 for n in notes if n.kind == AnnotationKind.COMMENT),
        tags=sum(1 for n in notes if n.kind == AnnotationKind.TAG),
        stats=score_stats(scores),
        scored_turns=len({n.turn for n in scores if n.turn}),
    )


def session_annotations_get(
    *,
    session_id: str,
    user: Any = None,
    with_assignees: bool = False,
    branches: Iterable[str] | None = None,
) -> SessionAnnotations:
    """The annotations of a session grouped by target, the figures per branch and for the
    session, the review status and the active definitions: 3 queries (4 with
    ``with_assignees`` for an annotator), whatever the number of annotations.

    ``branches``: only the annotations of these branches (the compare page); the session's
    own annotations are then left out too. Does not check that the session exists (the
    page's own selector does).
    """
    definitions = definitions_get()
    active = {d.id: d for d in definitions}
    user_id = getattr(user, "pk", None) if getattr(user, "is_authenticated", False) else None
    notes = _notes(session_id, user_id, active, branches)
    grouped: dict[tuple[str, int], list[Note]] = {}
    per_branch: dict[str, list[Note]] = {}
    for note in notes:
        grouped.setdefault((note.branch_id, note.turn), []).append(note)
        if note.branch_id:
            per_branch.setdefault(note.branch_id, []).append(note)
    targets = {
        key: TargetNotes(
            branch_id=key[0],
            turn=key[1],
            scores=tuple(n for n in group if n.kind == AnnotationKind.SCORE),
            comments=tuple(n for n in group if n.kind == AnnotationKind.COMMENT),
            tags=tuple(n for n in group if n.kind == AnnotationKind.TAG),
        )
        for key, group in grouped.items()
    }
    writer = can_annotate(user)
    return SessionAnnotations(
        session_id=session_id,
        definitions=definitions,
        review=_review(session_id),
        can_annotate=writer,
        targets=targets,
        branches={b: _branch_scores(b, group) for b, group in per_branch.items()},
        summary=_branch_scores("", notes),
        assignees=assignable_users() if writer and with_assignees else (),
        can_moderate=can_moderate(user),
    )


def score_comparison(
    annotations: SessionAnnotations, a: str, b: str, *, from_turn: int = 1
) -> tuple[ScoreComparison, ...]:
    """Each scored definition on branches ``a`` and ``b``: their branch-level scores and the
    scores of their turns from ``from_turn`` on (the compare page: from the fork)."""

    def scored(branch_id: str) -> dict[int, ScoreStat]:
        notes = [
            n
            for (bid, turn), target in annotations.targets.items()
            if bid == branch_id and (turn == 0 or turn >= from_turn)
            for n in target.scores
        ]
        return {s.definition.id: s for s in score_stats(notes)}

    left, right = scored(a), scored(b)
    seen: dict[int, Definition] = {}
    for stat in (*left.values(), *right.values()):
        seen.setdefault(stat.definition.id, stat.definition)
    ids = sorted(seen, key=lambda i: _definition_order(seen[i]))
    return tuple(ScoreComparison(seen[i], left.get(i), right.get(i)) for i in ids)
