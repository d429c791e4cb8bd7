"""Every page runs the same number of SQL queries whatever the session's size."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from dashboard.links import compare_url, session_url, usage_url
from tests.support.builders import Writer, turn_items

pytestmark = pytest.mark.django_db


def _session(session_id: str, turns: int) -> None:
    """``turns`` turns on main (tools, usage), a branch from the middle, a branch of it."""
    w = Writer(session_id)
    w.turns(turns)
    w.branch(turns // 2, "alt")
    w.turns(3, start=turns // 2)
    w.branch(turns // 2 + 1, "alt/deeper")
    w.turns(2, start=turns // 2 + 1)


def _count(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries)


@pytest.fixture
def sizes():
    _session("small", 12)
    _session("large", 150)
    return ("small", "large")


@pytest.mark.parametrize(
    "url_for",
    [
        lambda sid: session_url(sid),
        lambda sid: session_url(sid, "alt/deeper"),
        lambda sid: session_url(sid, "main", 3),
        lambda sid: usage_url(sid, "alt"),
        lambda sid: compare_url(sid, "main", "alt/deeper"),
        lambda sid: reverse("session_turns", kwargs={"session_id": sid}) + "?start=1&end=9",
    ],
    ids=["detail", "detail-branch", "detail-turn", "usage-json", "compare", "turns-fragment"],
)
def test_session_pages_constant_queries(reviewer_client, sizes, url_for):
    small, large = (_count(reviewer_client, url_for(sid)) for sid in sizes)
    assert small == large


def test_detail_query_budget(reviewer_client, sizes):
    # auth (session + user + permissions) + session row + tree (3) + turns + usage
    # + the review workflow (score definitions, annotations, review status)
    # + the traces (issue 16: the session's traces, their spans aggregated)
    assert _count(reviewer_client, session_url("large", "alt")) <= 15


@pytest.mark.parametrize(
    ("url_for", "budget"),
    [
        # the list: + score definitions, the rows' score and review status, annotator options
        (lambda sid: reverse("home"), 11),
        (lambda sid: reverse("home") + "?q=question", 13),
        # + definitions, annotations, review; + 2 for the traces (issue 16: per-turn figures,
        # branch costs; the cost lines of usage.json; each side's cost in the compare view)
        (lambda sid: session_url(sid, "alt"), 15),
        (lambda sid: usage_url(sid, "alt"), 11),
        (lambda sid: compare_url(sid, "main", "alt/deeper"), 16),  # + the same three
    ],
    ids=["list", "search", "detail", "usage-json", "compare"],
)
def test_page_query_counts_are_exact(reviewer_client, sizes, url_for, budget):
    """The counts the pages had before the review package split; a change must be deliberate."""
    assert _count(reviewer_client, url_for("large")) == budget


def test_session_list_constant_queries(reviewer_client):
    Writer("one").turn(turn_items(1))
    few = _count(reviewer_client, reverse("home"))
    search_few = _count(reviewer_client, reverse("home") + "?q=question")
    for n in range(12):
        _session(f"s{n}", 6)
    assert _count(reviewer_client, reverse("home")) == few
    assert _count(reviewer_client, reverse("home") + "?q=question&tool=calculator") == search_few


def test_detail_on_the_preferred_branch_costs_no_extra_query(reviewer_client, sizes):
    from conversations.services import branch_prefer

    before = _count(reviewer_client, session_url("large", "alt"))
    for sid in sizes:
        branch_prefer(session_id=sid, branch_id="alt")
    small, large = (_count(reviewer_client, session_url(sid)) for sid in sizes)
    assert small == large == before
