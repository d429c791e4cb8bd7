"""The review pages render what the selectors return (thin views, correct URLs)."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from django.utils.html import escape

from dashboard.links import compare_url, session_url, usage_url
from tests.support.builders import Writer, trip_session, turn_items

pytestmark = pytest.mark.django_db


@pytest.fixture
def trip():
    return trip_session("demo/trip")


def test_home_lists_sessions_with_title_and_counts(reviewer_client, trip):
    html = reviewer_client.get(reverse("home")).content.decode()
    assert "question 1" in html and "demo/trip" in html
    assert 'href="/sessions/demo/trip/"' in html


def test_home_sort_and_filter_params(reviewer_client, trip):
    Writer("other").turn(turn_items(1, text="zzz other"))
    html = reviewer_client.get(reverse("home"), {"sort": "title"}).content.decode()
    assert html.index("question 1") < html.index("zzz other")
    html = reviewer_client.get(reverse("home"), {"branched": "1"}).content.decode()
    assert "zzz other" not in html


def test_home_search_shows_hits_linking_to_branch_and_turn(reviewer_client, trip):
    html = reviewer_client.get(reverse("home"), {"q": "nikko"}).content.decode()
    assert 'id="search-results"' in html
    assert "only in <code>tokyo/nikko</code>" in html
    assert "branch=tokyo%2Fnikko&amp;turn=4#turn-4" in html


def test_home_search_honours_the_list_filters(reviewer_client, trip):
    Writer("plain").turn(turn_items(1, text="nikko without tools"))
    html = reviewer_client.get(reverse("home"), {"q": "nikko"}).content.decode()
    assert 'data-session="plain"' in html and 'data-session="demo/trip"' in html
    assert "in the sessions filtered below" not in html
    html = reviewer_client.get(reverse("home"), {"q": "nikko", "tool": "calculator"}).content
    html = html.decode()
    assert 'data-session="plain"' not in html and 'data-session="demo/trip"' in html
    assert "in the sessions filtered below" in html


def test_detail_renders_branch_turns_tree_and_charts(reviewer_client, trip):
    html = reviewer_client.get(session_url("demo/trip", "tokyo")).content.decode()
    assert 'id="turn-3"' in html and 'id="branch-tree"' in html and 'id="token-charts"' in html
    assert 'class="branch-switcher"' in html
    assert "<strong>3</strong>" in html  # markdown rendered: "answer **3**"
    assert 'data-tool="calculator"' in html


def test_detail_marks_turn_without_usage(reviewer_client, trip):
    html = reviewer_client.get(session_url("demo/trip")).content.decode()
    assert "token-missing" in html


def test_detail_has_action_hooks(reviewer_client, trip):
    html = reviewer_client.get(session_url("demo/trip")).content.decode()
    assert 'id="session-actions"' in html and 'id="compare-link"' in html


def test_usage_json_twin(reviewer_client, trip):
    data = json.loads(reviewer_client.get(usage_url("demo/trip", "main")).content)
    assert data["branch"] == "main" and data["missing_turns"] == [5]
    assert [p["turn"] for p in data["per_turn"]] == [1, 2, 3, 4, 5, 6]
    assert {line["branch"] for line in data["cumulative"]} == {
        "main",
        "tokyo",
        "tokyo/nikko",
        "bigger budget",
    }


def test_turns_fragment(reviewer_client):
    Writer("long").bulk(60)
    url = reverse("session_turns", kwargs={"session_id": "long"})
    html = reviewer_client.get(url, {"branch": "main", "start": 11, "end": 35}).content.decode()
    assert 'id="turn-11"' in html and 'id="turn-35"' in html and 'id="turn-36"' not in html


def test_compare_page(reviewer_client, trip):
    response = reviewer_client.get(compare_url("demo/trip", "main", "bigger budget"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Diverge at <strong>turn 4</strong>" in html and "<del>" in html
    assert "no turn 6 on this branch" in html


@pytest.mark.parametrize(
    "session_id",
    ["with space", "a/b/c", "quote\"s and 'single'", "café ☕ 東京", "percent%20x", "hash#q?x=1"],
)
def test_odd_session_ids_work_in_every_url(reviewer_client, session_id):
    w = Writer(session_id)
    w.turn(turn_items(1))
    w.turn(turn_items(2))
    w.branch(2, 'b/<x> "q" é')
    w.turn(turn_items(2, text="other"))
    for url in (
        session_url(session_id),
        session_url(session_id, 'b/<x> "q" é', 2),
        usage_url(session_id, 'b/<x> "q" é'),
        compare_url(session_id, "main", 'b/<x> "q" é'),
    ):
        response = reviewer_client.get(url)
        assert response.status_code == 200, url
    html = reviewer_client.get(reverse("home")).content.decode()
    assert escape(session_url(session_id)) in html
