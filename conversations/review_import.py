"""The one bulk writer of the review tables: a session tree's annotations and review status,
written by :func:`conversations.exchange.tree.tree_import` after it has checked them all.

Kept apart from :mod:`conversations.reviews` (the per-user writes of the pages and the API)
because it writes what another deployment recorded: the authors, the definitions and the
times come from the file (resolved by the importer), and every row is audited as
``imported`` with no actor.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from .models import Annotation, AuditEntry, SessionReview
from .reviews import annotation_state

__all__ = ["annotations_import"]

#: Rows per INSERT / UPDATE statement.
BATCH = 500


def annotations_import(
    *,
    session_id: str,
    annotations: Sequence[Annotation],
    times: Sequence[tuple[datetime, datetime]],
    review: SessionReview | None,
    using: str,
) -> int:
    """Write ``annotations`` (unsaved, validated, their ``author`` and ``definition`` set) with
    their ``(created_at, updated_at)`` from ``times``, and ``review``; inside the caller's
    transaction. Returns how many annotations.

    ``bulk_create`` stamps ``auto_now_add`` / ``auto_now`` fields with the present time, so the
    file's times are put back by one ``bulk_update`` (which does not stamp them).
    """
    rows = Annotation.objects.using(using).bulk_create(annotations, batch_size=BATCH)
    for row, (created, updated) in zip(rows, times, strict=True):
        row.created_at, row.updated_at = created, updated
    if rows:
        Annotation.objects.using(using).bulk_update(
            rows, ["created_at", "updated_at"], batch_size=BATCH
        )
    audit = [
        AuditEntry(
            actor=None,
            action="imported",
            kind=row.kind,
            session_id=session_id,
            object_id=row.pk,
            before=None,
            after=annotation_state(row),
        )
        for row in rows
    ]
    if review is not None:
        review.save(using=using, force_insert=True)
        assignee = review.assignee
        audit.append(
            AuditEntry(
                actor=None,
                action="imported",
                kind="review",
                session_id=session_id,
                object_id=None,
                before=None,
                after={
                    "status": review.status,
                    "assignee": assignee.get_username() if assignee is not None else None,
                },
            )
        )
    AuditEntry.objects.using(using).bulk_create(audit, batch_size=BATCH)
    return len(rows)
