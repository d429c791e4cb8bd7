"""The review pages' routes (included by ``dashboard/urls.py`` after the other session routes).

Session ids go through ``<sid:...>`` (``dashboard.links.SessionIdConverter``, registered by
``dashboard/urls.py``): ids holding "/" are written encoded, so no id reaches another route.
Plain paths holding "/" still resolve, so the suffixed routes come first and the bare session
route, a catch-all, last.
"""

from __future__ import annotations

from django.urls import path

from . import annotate, datasets, views

_notes = "sessions/<sid:session_id>/annotations/"

urlpatterns = [
    path("", views.home, name="home"),
    # The listed sessions as a dataset (dashboard/review/datasets.py).
    path("datasets/", datasets.dataset_export, name="dataset_export"),
    # The review queue (dashboard/review/annotate.py).
    path("review/", annotate.queue_start, name="review_queue"),
    path("review/next/", annotate.queue_next, name="review_next"),
    # The session page's review writes (JSON; annotate.py), before the catch-all.
    path(_notes, annotate.annotations_get, name="annotations_get"),
    path(f"{_notes}score/", annotate.score_set, name="annotation_score"),
    path(f"{_notes}score/clear/", annotate.score_clear, name="annotation_score_clear"),
    path(f"{_notes}comment/", annotate.comment_add, name="annotation_comment"),
    path(f"{_notes}tag/", annotate.tag_add, name="annotation_tag"),
    path(f"{_notes}review/", annotate.review_set, name="annotation_review"),
    path(f"{_notes}<int:annotation_id>/", annotate.annotation_edit, name="annotation_edit"),
    path(
        f"{_notes}<int:annotation_id>/delete/",
        annotate.annotation_delete,
        name="annotation_delete",
    ),
    path("sessions/<sid:session_id>/usage.json", views.session_usage, name="session_usage"),
    path("sessions/<sid:session_id>/trace.json", views.session_trace, name="session_trace"),
    path("sessions/<sid:session_id>/compare/", views.session_compare, name="session_compare"),
    path("sessions/<sid:session_id>/turns/", views.session_turns, name="session_turns"),
    path("sessions/<sid:session_id>/prefer/", views.session_prefer, name="session_prefer"),
    path("sessions/<sid:session_id>/", views.session_detail, name="session_detail"),
]
