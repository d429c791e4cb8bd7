"""The list endpoints run the same number of queries at two sizes (and within a budget)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations.models import ScoreDefinition
from conversations.reviews import Target, comment_add, score_set, tag_add
from dashboard.review.selectors import SessionListFilters, session_list
from tests.support.builders import Writer, turn_items

from .conftest import API

pytestmark = pytest.mark.django_db


def _count(who, url: str) -> int:
    who.get(url)  # the token's "last used" write happens once a minute: not counted below
    with CaptureQueriesContext(connection) as queries:
        response = who.get(url)
    assert response.status_code == 200, (url, response.content[:300])
    return len(queries)


def _sessions(prefix: str, n: int) -> None:
    for i in range(n):
        w = Writer(f"{prefix}{i}")
        w.turn(turn_items(1, tool=i % 2 == 0))
        if i % 3 == 0:
            w.branch(1, "alt")
            w.turn(turn_items(1, text="alt"))


def test_session_list_constant(caller):
    viewer = caller("viewer")
    _sessions("a", 3)
    urls = [
        f"{API}/sessions/",
        f"{API}/sessions/?tool=calculator&branched=1&sort=-tokens&per_page=50",
    ]
    small = [_count(viewer, url) for url in urls]
    _sessions("b", 40)
    large = [_count(viewer, url) for url in urls]
    assert small == large
    # the token, the user's permissions (2), then the list's own queries: no more
    with CaptureQueriesContext(connection) as own:
        session_list(filters=SessionListFilters.from_query({"tool": "calculator"}))
    assert max(large) == 3 + len(own), (large, len(own))


def _annotate(session_id: str, users, n: int) -> None:
    helpful = ScoreDefinition.objects.get_or_create(name="helpful", kind="boolean")[0]
    for i in range(n):
        target = Target(session_id, "main", 1 + i % 3)
        author = users["annotator"] if i % 2 else users["other_annotator"]
        comment_add(user=author, target=target, body=f"note {i}")
        tag_add(user=author, target=target, tag=f"t{i}")
    score_set(user=users["annotator"], target=Target(session_id), definition=helpful, value=1)


def test_annotations_list_constant(caller, users):
    for sid in ("small", "large"):
        w = Writer(sid)
        w.turns(3)
    _annotate("small", users, 2)
    _annotate("large", users, 60)
    viewer = caller("viewer")
    counts = [_count(viewer, f"{API}/sessions/{sid}/annotations/") for sid in ("small", "large")]
    # token, permissions (2), the session, the count, the page (authors and definitions joined)
    assert counts[0] == counts[1] == 6, counts


@pytest.mark.parametrize(
    "path",
    [
        "/sessions/{sid}/",
        "/sessions/{sid}/branches/main/turns/",
        "/sessions/{sid}/branches/alt/turns/?page=2&per_page=5",
        "/sessions/{sid}/usage/?branch=alt",
        "/sessions/{sid}/review/",
        "/score-definitions/",
    ],
)
def test_session_endpoints_constant(caller, users, path):
    for sid, turns in (("small", 12), ("large", 120)):
        w = Writer(sid)
        w.turns(turns)
        w.branch(turns // 2, "alt")
        w.turns(6, start=turns // 2)
    viewer = caller("viewer")
    small, large = (_count(viewer, API + path.format(sid=sid)) for sid in ("small", "large"))
    assert small == large, (small, large)
