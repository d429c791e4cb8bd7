"""The session list's review filters and columns read what the review tables hold.

Like ``test_session_list_plans``: sessions written with plain SQL (the triggers summarise
them), then scores, comments, tags and review statuses written through
``conversations.reviews``, each also recorded here. Every review filter, combined with the
list's other filters, both read paths (``sessions.FEW``), two sorts and every page, must give
the rows and the count a from-scratch computation over that record gives; the columns (the
average score, the review status) too. The page's queries stay constant.
"""

from __future__ import annotations

import itertools
from datetime import date
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations import reviews
from conversations.models import ReviewStatus, ScoreDefinition
from dashboard.review.selectors import sessions
from tests.conftest import grant
from tests.dashboard.review.test_session_list_plans import TOOLS, _build

pytestmark = pytest.mark.django_db


def _annotate(truth: list[dict[str, Any]], django_user_model) -> dict[str, Any]:
    """Scores, comments, tags and statuses on the sessions of ``truth``; their record."""
    alice = grant(django_user_model.objects.create_user("alice"), "view_agentsession", "annotate")
    bob = grant(django_user_model.objects.create_user("bob"), "view_agentsession", "annotate")
    helpful = ScoreDefinition.objects.create(name="helpful", kind="boolean", position=1)
    quality = ScoreDefinition.objects.create(
        name="quality", kind="numeric", min_value=1, max_value=5, position=2
    )
    ScoreDefinition.objects.create(
        name="failure", kind="categorical", labels=["none", "wrong tool"], position=3
    )
    notes: list[dict[str, Any]] = []
    status: dict[str, str] = {}

    def note(sid: str, kind: str, author: Any, **fields: Any) -> None:
        notes.append({"sid": sid, "kind": kind, "author": author.username, **fields})

    for i, t in enumerate(truth):
        sid = t["session_id"]
        turn = reviews.Target(sid, "main", 1) if t["turns"] else reviews.Target(sid)
        if i % 5 == 0:
            reviews.score_set(user=alice, target=turn, definition=helpful, value=i % 2)
            note(sid, "score", alice, definition="helpful", value=float(i % 2))
        if i % 10 == 0:
            reviews.score_set(user=bob, target=turn, definition=helpful, value=1)
            note(sid, "score", bob, definition="helpful", value=1.0)
        if i % 7 == 0:
            value = 1 + i % 5
            reviews.score_set(user=bob, target=reviews.Target(sid), definition=quality, value=value)
            note(sid, "score", bob, definition="quality", value=float(value))
        if i % 11 == 0 and t["turns"]:
            value = 5 - i % 4
            reviews.score_set(user=alice, target=turn, definition=quality, value=value)
            note(sid, "score", alice, definition="quality", value=float(value))
        if i % 6 == 1:
            reviews.tag_add(user=bob, target=reviews.Target(sid), tag="hallucination")
            note(sid, "tag", bob, label="hallucination")
        if i % 12 == 7 and t["turns"]:
            reviews.tag_add(user=alice, target=turn, tag="hallucination")
            note(sid, "tag", alice, label="hallucination")
        if i % 9 == 2:
            reviews.comment_add(user=alice, target=turn, body="Cites the wrong file.")
            note(sid, "comment", alice)
        if i % 13 == 3:
            reviews.comment_add(user=bob, target=reviews.Target(sid), body="Fine.")
            note(sid, "comment", bob)
        chosen = {0: "reviewed", 1: "in_review", 2: "needs_fix", 3: "unreviewed"}.get(i % 8)
        if chosen:
            reviews.review_status_set(user=alice, session_id=sid, status=chosen)
            status[sid] = chosen
    return {"notes": notes, "status": status}


def _selected(record: dict[str, Any], sid: str, f: sessions.SessionListFilters) -> bool:
    """Whether ``f``'s review filters select session ``sid``: the rules, from the record."""
    mine = [
        n
        for n in record["notes"]
        if n["sid"] == sid and (not f.annotator or n["author"] == f.annotator)
    ]
    if f.score and not any(
        n["kind"] == "score"
        and n["definition"] == f.score
        and (f.score_min is None or n["value"] >= f.score_min)
        and (f.score_max is None or n["value"] <= f.score_max)
        for n in mine
    ):
        return False
    if f.tag and not any(n["kind"] == "tag" and n["label"] == f.tag for n in mine):
        return False
    if f.commented and not any(n["kind"] == "comment" for n in mine):
        return False
    if f.annotator and not (f.score or f.tag or f.commented) and not mine:
        return False
    return not f.status or record["status"].get(sid, "unreviewed") == f.status


def _expected(truth, record, f: sessions.SessionListFilters, sort: str) -> list[str]:
    rows = [
        t
        for t in truth
        if (not f.tool or f.tool in t["tools"])
        and (not f.has_branches or t["branches"] > 1)
        and (not f.updated_from or t["updated"].date() >= f.updated_from)
        and (not f.updated_to or t["updated"].date() <= f.updated_to)
        and _selected(record, t["session_id"], f)
    ]
    key = sort.lstrip("-")

    def order(t: dict[str, Any]) -> Any:
        value = t[key]
        if key == "title" and value == "(no user message)":
            value = ""
        return (value, t["session_id"])

    return [t["session_id"] for t in sorted(rows, key=order, reverse=sort.startswith("-"))]


REVIEW_FILTERS = [
    {"score": "helpful"},
    {"score": "helpful", "score_min": 1},
    {"score": "helpful", "score_max": 0},
    {"score": "quality", "score_min": 3, "score_max": 4.5},
    {"score": "quality", "annotator": "alice"},
    {"score": "failure"},
    {"score": "no-such-score"},
    {"tag": "hallucination"},
    {"tag": "hallucination", "annotator": "alice"},
    {"commented": True},
    {"commented": True, "annotator": "bob"},
    {"annotator": "alice"},
    {"annotator": "nobody"},
    *({"status": s} for s in ReviewStatus.values),
    {"status": "unreviewed", "tag": "hallucination"},
    {"status": "unreviewed", "commented": True, "score": "helpful"},
    {"status": "reviewed", "score": "quality", "score_min": 2},
]
BASE_FILTERS = [
    {},
    {"tool": TOOLS[0]},
    {"tool": TOOLS[2]},
    {"has_branches": True},
    {"updated_from": date(2025, 1, 11), "updated_to": date(2025, 2, 20)},
    {"tool": TOOLS[1], "has_branches": True, "updated_from": date(2025, 1, 11)},
]


@pytest.mark.parametrize("few", [0, 10**9], ids=["along-the-sort", "through-the-filters"])
def test_review_filters_read_what_the_rows_say(monkeypatch, django_user_model, few):
    truth = _build(120)
    record = _annotate(truth, django_user_model)
    monkeypatch.setattr(sessions, "FEW", few)
    for review, base in itertools.product(REVIEW_FILTERS, BASE_FILTERS):
        filters = sessions.SessionListFilters(**base, **review)
        for sort in ("-updated", "title"):
            expected = _expected(truth, record, filters, sort)
            page = sessions.session_list(filters=filters, sort=sort, per_page=40)
            assert page.total == len(expected), (filters, sort)
            got = [row.session_id for row in page.rows]
            for number in range(2, page.num_pages + 1):
                more = sessions.session_list(filters=filters, sort=sort, page=number, per_page=40)
                got += [row.session_id for row in more.rows]
            assert got == expected, (filters, sort)
        # The search within the list's filters uses the same selection.
        ids = sessions.session_ids(filters)
        assert ids is not None
        assert sorted(ids) == sorted(_expected(truth, record, filters, "title")), filters
    assert sessions.session_ids(sessions.SessionListFilters()) is None


def _average(record, sid: str, definition: str) -> tuple[float | None, int]:
    values = [
        n["value"]
        for n in record["notes"]
        if n["sid"] == sid and n["kind"] == "score" and n["definition"] == definition
    ]
    return (sum(values) / len(values) if values else None), len(values)


def test_columns_average_and_status(django_user_model):
    truth = _build(60)
    record = _annotate(truth, django_user_model)
    page = sessions.session_list(per_page=100)
    assert page.score_column is not None and page.score_column.name == "helpful"
    assert [d.name for d in page.definitions] == ["helpful", "quality", "failure"]
    for row in page.rows:
        average, count = _average(record, row.session_id, "helpful")
        assert row.score_count == count
        assert row.score_avg == pytest.approx(average) if average is not None else True
        assert row.score_text == (f"{average * 100:.0f}% up" if count else "")
        assert row.review_status == record["status"].get(row.session_id, "unreviewed")
    filtered = sessions.session_list(
        filters=sessions.SessionListFilters(score="quality"), per_page=100
    )
    assert filtered.score_column is not None and filtered.score_column.name == "quality"
    assert filtered.rows
    for row in filtered.rows:
        average, count = _average(record, row.session_id, "quality")
        assert count and row.score_text == f"{average:.1f}"
    categorical = sessions.session_list(filters=sessions.SessionListFilters(score="failure"))
    assert categorical.score_column is not None and categorical.score_column.kind == "categorical"


def test_from_query_parses_the_review_parameters():
    f = sessions.SessionListFilters.from_query(
        {
            "score": "quality",
            "score_min": "2.5",
            "score_max": "nan",
            "tag": "x" * 100,
            "status": "needs_fix",
            "annotator": "alice",
            "commented": "1",
        }
    )
    assert (f.score, f.score_min, f.score_max) == ("quality", 2.5, None)
    assert (f.tag, f.status, f.annotator, f.commented) == ("x" * 64, "needs_fix", "alice", True)
    assert f.base() == sessions.SessionListFilters() and f != f.base()
    odd = sessions.SessionListFilters.from_query(
        {"status": "bogus", "score_min": "1", "commented": "yes", "score_max": "inf"}
    )
    assert odd == sessions.SessionListFilters()  # a range without a score is ignored


def _count(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries)


URLS = [
    "",
    "?score=helpful&score_min=1",
    "?tag=hallucination&annotator=alice",
    "?status=unreviewed",
    "?status=unreviewed&tool=lookup_order&branched=1",
    "?status=reviewed&commented=1&sort=title",
    "?annotator=bob&from=2025-01-11&to=2025-02-20",
]


def test_list_page_queries_stay_constant(reviewer_client, django_user_model, monkeypatch):
    """The same number of queries at 30 and at 120 sessions (both read paths), and a fixed
    budget: auth (3) + count + page + titles + definitions + columns + tools + annotator
    options (+1 count for "unreviewed")."""
    truth = _build(120)
    _annotate(truth, django_user_model)
    large = {url: _count(reviewer_client, reverse("home") + url) for url in URLS}
    with connection.cursor() as cursor:  # down to 30 sessions (the triggers follow)
        for table in ("message_structure", "turn_usage", "agent_messages", "agent_sessions"):
            cursor.execute(f"DELETE FROM {table} WHERE session_id >= 's030'")
    for url in URLS:
        assert _count(reviewer_client, reverse("home") + url) == large[url], url
    monkeypatch.setattr(sessions, "FEW", 0)
    for url in URLS:
        assert _count(reviewer_client, reverse("home") + url) == large[url], url
    assert large[""] == 11
    assert large["?status=unreviewed"] == 12
    assert large["?score=helpful&score_min=1"] == 11


def test_the_page_shows_the_filters_and_columns(reviewer_client, django_user_model):
    truth = _build(12)
    _annotate(truth, django_user_model)
    html = reviewer_client.get(reverse("home") + "?score=quality&score_min=2&status=reviewed")
    text = html.content.decode()
    assert '<option value="quality" data-kind="numeric" selected>' in text
    assert 'name="score_min" value="2"' in text
    assert '<option value="reviewed" selected>' in text
    assert '<option value="alice">alice</option>' in text
    assert 'data-status="reviewed"' in text
    # The export form carries the filters.
    assert '<input type="hidden" name="score" value="quality">' in text
    assert '<input type="hidden" name="status" value="reviewed">' in text
    # Nonsense parameters are ignored, never an error.
    bad = reviewer_client.get(reverse("home") + "?score_min=abc&status=%00&annotator=%ff&tag=")
    assert bad.status_code == 200
