"""Unknown sessions and branches: the selectors raise domain exceptions, the views answer 404."""

from __future__ import annotations

import pytest
from django.urls import reverse

from conversations.models import AgentSession
from dashboard.links import compare_url, session_url, turns_url, usage_url
from dashboard.review import selectors
from dashboard.review.selectors import BranchNotFound, ReviewError, SessionNotFound
from tests.support.builders import trip_session

pytestmark = pytest.mark.django_db


@pytest.fixture
def trip():
    trip_session("trip")


def test_exceptions_are_lookup_errors():
    assert issubclass(SessionNotFound, ReviewError) and issubclass(BranchNotFound, ReviewError)
    assert issubclass(ReviewError, LookupError)
    error = BranchNotFound("s", "b")
    assert (error.session_id, error.branch_id, str(error)) == ("s", "b", "No such branch")


@pytest.mark.parametrize(
    "read",
    [
        lambda: selectors.branch_tree_get(session_id="nope"),
        lambda: selectors.session_detail_get(session_id="nope"),
        lambda: selectors.usage_series_get(session_id="nope", branch_id="main"),
        lambda: selectors.branch_compare_get(session_id="nope", a="main", b="main"),
        lambda: selectors.turn_fragment_get(session_id="nope", branch_id="main", start=1, end=2),
    ],
    ids=["tree", "detail", "usage", "compare", "fragment"],
)
def test_unknown_session_raises_session_not_found(read):
    with pytest.raises(SessionNotFound) as caught:
        read()
    assert caught.value.session_id == "nope"


def test_session_row_without_messages_is_not_found():
    AgentSession.objects.create(session_id="empty")
    with pytest.raises(SessionNotFound):
        selectors.session_detail_get(session_id="empty")


@pytest.mark.parametrize(
    "read",
    [
        lambda: selectors.session_detail_get(session_id="trip", branch_id="nope"),
        lambda: selectors.usage_series_get(session_id="trip", branch_id="nope"),
        lambda: selectors.branch_compare_get(session_id="trip", a="main", b="nope"),
        lambda: selectors.branch_compare_get(session_id="trip", a="nope", b="main"),
        lambda: selectors.turn_fragment_get(session_id="trip", branch_id="nope", start=1, end=2),
        lambda: selectors.turn_page_get(
            tree=selectors.branch_tree_get(session_id="trip"), branch_id="nope"
        ),
        lambda: selectors.branch_tree_get(session_id="trip").node("nope"),
    ],
    ids=["detail", "usage", "compare-b", "compare-a", "fragment", "turn-page", "node"],
)
def test_unknown_branch_raises_branch_not_found(trip, read):
    with pytest.raises(BranchNotFound) as caught:
        read()
    assert (caught.value.session_id, caught.value.branch_id) == ("trip", "nope")


@pytest.mark.parametrize(
    "url",
    [
        lambda: session_url("nope"),
        lambda: session_url("trip", "nope"),
        lambda: usage_url("nope", "main"),
        lambda: usage_url("trip", "nope"),
        lambda: compare_url("trip", "main", "nope"),
        lambda: reverse("session_compare", kwargs={"session_id": "nope"}),
        lambda: turns_url("trip", "nope", start=1, end=2),
        lambda: turns_url("nope", "main", start=1, end=2),
    ],
    ids=[
        "detail-session",
        "detail-branch",
        "usage-session",
        "usage-branch",
        "compare-branch",
        "compare-session",
        "fragment-branch",
        "fragment-session",
    ],
)
def test_views_answer_404_with_the_not_found_page(reviewer_client, trip, url):
    response = reviewer_client.get(url())
    assert response.status_code == 404
    assert b"no such session or branch" in response.content
