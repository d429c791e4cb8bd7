"""Template helpers of the review workflow: a target's annotations out of a page's
``SessionAnnotations`` (``dashboard/review/selectors/annotations.py``).

``{% load review_notes %}`` then ``{% with notes=ann|notes_for:turn %}`` (a ``Turn``) or
``{{ ann|scores_for:node.branch_id }}`` (a branch's ``BranchScores``).
"""

from __future__ import annotations

from typing import Any

from django import template

from dashboard.review.selectors.annotations import BranchScores, SessionAnnotations, TargetNotes

register = template.Library()


@register.filter
def notes_for(ann: SessionAnnotations | None, turn: Any) -> TargetNotes | None:
    """The annotations of a turn (a ``Turn``: its branch and number)."""
    if not isinstance(ann, SessionAnnotations):
        return None
    return ann.target(str(turn.branch_id), int(turn.number))


@register.filter
def scores_for(ann: SessionAnnotations | None, branch_id: Any) -> BranchScores | None:
    """The figures of a branch (its own annotations)."""
    if not isinstance(ann, SessionAnnotations):
        return None
    return ann.branch(str(branch_id))


@register.filter
def branch_notes(ann: SessionAnnotations | None, branch_id: Any) -> TargetNotes | None:
    """The annotations on the branch itself (not on its turns)."""
    if not isinstance(ann, SessionAnnotations):
        return None
    return ann.target(str(branch_id), 0)


@register.filter
def mine_of(notes: TargetNotes | None, definition: Any) -> Any:
    """The viewer's own score of ``definition`` on the target, or ``None``."""
    if notes is None or definition is None:
        return None
    return notes.mine(definition)


@register.filter
def votes_of(notes: TargetNotes | None, definition: Any) -> tuple[int, int]:
    """``(up, down)`` of a thumbs score on the target."""
    if notes is None or definition is None:
        return (0, 0)
    return notes.votes(definition)


@register.filter
def stat_of(notes: TargetNotes | None, definition: Any) -> Any:
    """The figure of ``definition`` on the target (every author), or ``None``."""
    if notes is None or definition is None:
        return None
    return next((s for s in notes.stats if s.definition.id == definition.id), None)
