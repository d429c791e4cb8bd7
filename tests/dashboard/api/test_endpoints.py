"""What each endpoint answers: shapes, pagination, filters, sorts, 404s, 400s and 422s."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from conversations.exchange import tree_export
from conversations.models import Annotation, SessionReview
from conversations.reviews import Target, comment_add, score_set, tag_add
from dashboard.review.selectors import usage_series_get
from tests.support.builders import Writer, turn_items

from .conftest import API, SID, SID_SEG

pytestmark = pytest.mark.django_db


# ---- Sessions ---------------------------------------------------------------------------------


def _sessions(n: int, *, tool_every: int = 0, branched_every: int = 0) -> list[str]:
    ids = []
    for i in range(n):
        sid = f"s{i:02d}"
        w = Writer(sid)
        w.turn(turn_items(1, tool=bool(tool_every) and i % tool_every == 0))
        if branched_every and i % branched_every == 0:
            w.turn(turn_items(2))
            w.branch(1, "alt")
            w.turn(turn_items(1, text="alt"))
        ids.append(sid)
    return ids


def test_session_list_pages(caller):
    ids = _sessions(7)
    viewer = caller("viewer")
    first = viewer.get(f"{API}/sessions/?per_page=3&sort=created").json()
    assert (first["page"], first["num_pages"], first["total"], first["sort"]) == (
        1,
        3,
        7,
        "created",
    )
    seen = [row["session_id"] for row in first["items"]]
    for page in (2, 3):
        seen += [
            r["session_id"]
            for r in viewer.get(f"{API}/sessions/?per_page=3&page={page}&sort=created").json()[
                "items"
            ]
        ]
    assert seen == ids  # every session once, in creation order
    row = first["items"][0]
    assert set(row) == {
        "session_id",
        "title",
        "turns",
        "branches",
        "total_tokens",
        "cost",
        "created_at",
        "updated_at",
        "url",
    }
    assert row["title"] == "question 1" and row["turns"] == 1 and row["url"] == "/sessions/s00/"
    assert row["cost"] is None  # no model call traced
    # past the end: the last page (as the list page does)
    late = viewer.get(f"{API}/sessions/?per_page=3&page=999").json()
    assert late["page"] == 3 and len(late["items"]) == 1
    # descending
    newest = viewer.get(f"{API}/sessions/?sort=-created&per_page=1").json()["items"][0]
    assert newest["session_id"] == "s06"


def test_session_list_filters(caller):
    _sessions(6, tool_every=2, branched_every=3)
    viewer = caller("viewer")
    branched = viewer.get(f"{API}/sessions/?branched=true").json()
    assert {r["session_id"] for r in branched["items"]} == {"s00", "s03"} and branched["total"] == 2
    tool = viewer.get(f"{API}/sessions/?tool=calculator").json()
    assert {r["session_id"] for r in tool["items"]} == {"s00", "s02", "s04"}
    both = viewer.get(f"{API}/sessions/?tool=calculator&branched=1").json()
    assert [r["session_id"] for r in both["items"]] == ["s00"]
    today = datetime.now(UTC).date().isoformat()
    assert viewer.get(f"{API}/sessions/?from={today}").json()["total"] == 6
    assert viewer.get(f"{API}/sessions/?to=2000-01-01").json()["total"] == 0


@pytest.mark.parametrize(
    "query, field",
    [
        ("page=0", "page"),
        ("page=-3", "page"),
        ("page=abc", "page"),
        ("page=99999999999999999999999", "page"),
        ("per_page=1000", "per_page"),
        ("sort=nonsense", "sort"),
        ("sort=--title", "sort"),
        ("from=2026-13-01", "from"),
        ("to=yesterday", "to"),
        ("branched=maybe", "branched"),
        ("tool=" + "x" * 300, "tool"),
    ],
)
def test_session_list_bad_parameters_are_422_naming_them(caller, query, field):
    response = caller("viewer").get(f"{API}/sessions/?{query}")
    assert response.status_code == 422, response.content
    assert [e["loc"] for e in response.json()["detail"]] == [["query", field]]


def test_session_list_nul_is_422(caller):
    response = caller("viewer").get(f"{API}/sessions/?tool=a%00b")
    assert response.status_code == 422
    assert response.json() == {"detail": "'tool' holds a NUL character.", "field": "tool"}


def test_session_tree_is_the_json_export(trip, caller):
    response = caller("viewer").get(f"{API}/sessions/{SID_SEG}/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert json.loads(body) == json.loads(json.dumps(tree_export(session_id=SID)))


def test_session_tree_of_a_big_session_streams_from_a_file(caller, settings, monkeypatch):
    from conversations import views

    monkeypatch.setattr(views, "SPOOL_MAX_BYTES", 1000)  # any session is "big" now
    from dashboard.api import sessions

    monkeypatch.setattr(sessions, "spool", views.spool)
    w = Writer("big")
    w.turns(5)
    response = caller("viewer").get(f"{API}/sessions/big/")
    assert response.status_code == 200 and response.streaming
    body = b"".join(response.streaming_content)
    assert int(response["Content-Length"]) == len(body)
    assert json.loads(body)["session"]["session_id"] == "big"


def test_turns_pages(trip, caller):
    viewer = caller("viewer")
    page = viewer.get(f"{API}/sessions/{SID_SEG}/branches/tokyo/turns/?per_page=2").json()
    assert (page["page"], page["num_pages"], page["total"]) == (1, 2, 4)
    assert [t["number"] for t in page["items"]] == [1, 2]
    first = page["items"][0]
    assert first["user_text"] == "question 1" and first["shared_with_parent"] is True
    assert first["usage"] == {
        "input_tokens": 100,
        "output_tokens": 10,
        "total_tokens": 110,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "requests": 1,
        "branch_id": "main",
    }
    tool = next(i for i in first["items"] if i["kind"] == "tool")["tool"]
    assert tool["name"] == "calculator" and tool["output"] == "2"
    last = viewer.get(f"{API}/sessions/{SID_SEG}/branches/tokyo/turns/?per_page=2&page=2").json()
    assert [t["number"] for t in last["items"]] == [3, 4]
    assert last["items"][0]["shared_with_parent"] is False
    assert last["items"][0]["usage"]["branch_id"] == "tokyo"
    assert last["items"][0]["usage"]["total_tokens"] == 1050
    # turn 3 of main forks: main and tokyo differ from it on
    main3 = viewer.get(f"{API}/sessions/{SID_SEG}/branches/main/turns/?per_page=1&page=3").json()
    assert main3["items"][0]["branches_here"] == ["main", "tokyo"]
    # turn 5 of main has no usage row
    main5 = viewer.get(f"{API}/sessions/{SID_SEG}/branches/main/turns/?per_page=1&page=5").json()
    assert main5["items"][0]["usage"] is None


def test_turns_of_a_branch_id_with_a_slash_and_a_space(trip, caller):
    nikko = (
        caller("viewer").get(f"{API}/sessions/{SID_SEG}/branches/~dG9reW8vbmlra28/turns/").json()
    )
    assert nikko["branch_id"] == "tokyo/nikko" and nikko["total"] == 4
    budget = (
        caller("viewer").get(f"{API}/sessions/{SID_SEG}/branches/bigger%20budget/turns/").json()
    )
    assert budget["branch_id"] == "bigger budget"


def test_usage_is_the_charts_data(trip, caller):
    got = caller("viewer").get(f"{API}/sessions/{SID_SEG}/usage/?branch=tokyo").json()
    assert got == json.loads(
        json.dumps(usage_series_get(session_id=SID, branch_id="tokyo").as_json())
    )
    main = caller("viewer").get(f"{API}/sessions/{SID_SEG}/usage/").json()
    assert main["branch"] == "main" and main["missing_turns"] == [5]


@pytest.mark.parametrize(
    "path, field",
    [
        ("/sessions/nope/", "session_id"),
        ("/sessions/nope/branches/main/turns/", "session_id"),
        (f"/sessions/{SID_SEG}/branches/nope/turns/", "branch_id"),
        ("/sessions/nope/usage/", "session_id"),
        (f"/sessions/{SID_SEG}/usage/?branch=nope", "branch_id"),
        ("/sessions/nope/annotations/", "session_id"),
        ("/sessions/nope/review/", "session_id"),
    ],
)
def test_unknown_ids_are_404(trip, caller, path, field):
    response = caller("viewer").get(API + path)
    assert response.status_code == 404
    assert response.json()["field"] == field and response.json()["detail"].startswith("No such")


@pytest.mark.parametrize(
    "path", ["/", "/nope", "/sessions", "/sessions/x/nope/", "/annotations/", "/static/x.js"]
)
def test_unknown_paths_are_json_404(caller, path):
    response = caller("viewer").get(API + path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert "detail" in response.json()


def test_wrong_method_is_json_405(trip, caller):
    response = caller("annotator").send("DELETE", f"{API}/sessions/")
    assert response.status_code == 405
    assert response["Allow"] == "GET" and "not allowed" in response.json()["detail"]


# ---- Annotations --------------------------------------------------------------------------


def test_annotations_listed_with_author_definition_target(trip, users, caller, definitions):
    score_set(
        user=users["annotator"],
        target=Target(SID, "tokyo", 3),
        definition="quality",
        value=4,
        comment="ok",
    )
    comment_add(user=users["other_annotator"], target=Target(SID, "main"), body="**main** is fine")
    tag_add(user=users["annotator"], target=Target(SID), tag="golden")
    got = caller("viewer").get(f"{API}/sessions/{SID_SEG}/annotations/").json()
    assert got["total"] == 3 and got["num_pages"] == 1
    score, comment, tag = got["items"]
    assert score["kind"] == "score" and score["target"] == "turn" and score["author"] == "annotator"
    assert (score["definition"], score["value"], score["body"]) == ("quality", 4.0, "ok")
    assert (score["branch_id"], score["turn"]) == ("tokyo", 3)
    assert (
        comment["target"] == "branch"
        and comment["body"] == "**main** is fine"
        and comment["author"] == "other"
    )
    assert tag["target"] == "session" and tag["label"] == "golden" and tag["branch_id"] == ""
    only = caller("viewer").get(f"{API}/sessions/{SID_SEG}/annotations/?kind=comment").json()
    assert [a["kind"] for a in only["items"]] == ["comment"]
    on_tokyo = (
        caller("viewer").get(f"{API}/sessions/{SID_SEG}/annotations/?branch=tokyo&turn=3").json()
    )
    assert [a["kind"] for a in on_tokyo["items"]] == ["score"]
    session_own = caller("viewer").get(f"{API}/sessions/{SID_SEG}/annotations/?branch=").json()
    assert [a["kind"] for a in session_own["items"]] == ["tag"]
    paged = caller("viewer").get(f"{API}/sessions/{SID_SEG}/annotations/?per_page=2&page=2").json()
    assert (paged["page"], paged["num_pages"], [a["kind"] for a in paged["items"]]) == (
        2,
        2,
        ["tag"],
    )


def _post(caller, body, kind="annotator"):
    return caller(kind).send("POST", f"{API}/sessions/{SID_SEG}/annotations/", body)


def test_create_score_comment_tag(trip, caller, definitions):
    response = _post(
        caller,
        {"kind": "score", "definition": "helpful", "value": "up", "branch_id": "tokyo", "turn": 3},
    )
    assert response.status_code == 201, response.content
    made = response.json()
    assert (made["kind"], made["value"], made["target"], made["author"]) == (
        "score",
        1.0,
        "turn",
        "annotator",
    )
    again = _post(
        caller,
        {"kind": "score", "definition": "helpful", "value": 0, "branch_id": "tokyo", "turn": 3},
    )
    assert (
        again.status_code == 201
        and again.json()["id"] == made["id"]
        and again.json()["value"] == 0.0
    )
    cat = _post(
        caller, {"kind": "score", "definition": "failure", "value": "tool", "comment": "wrong tool"}
    )
    assert (cat.json()["value"], cat.json()["label"], cat.json()["body"]) == (
        1.0,
        "tool",
        "wrong tool",
    )
    comment = _post(caller, {"kind": "comment", "body": "Look at *this*", "branch_id": "main"})
    assert comment.status_code == 201 and comment.json()["target"] == "branch"
    tag = _post(caller, {"kind": "tag", "label": "regression"})
    assert tag.status_code == 201 and tag.json()["target"] == "session"
    assert Annotation.objects.count() == 4


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"kind": "score", "definition": "helpful"}, 400, "value"),
        ({"kind": "score", "value": 1}, 400, "definition"),
        ({"kind": "score", "definition": "nope", "value": 1}, 400, "definition"),
        ({"kind": "score", "definition": "old", "value": 1}, 400, "definition"),
        ({"kind": "score", "definition": "helpful", "value": 7}, 400, "value"),
        ({"kind": "score", "definition": "quality", "value": 9}, 400, "value"),
        ({"kind": "score", "definition": "quality", "value": "NaN"}, 400, "value"),
        ({"kind": "score", "definition": "failure", "value": "other"}, 400, "value"),
        ({"kind": "comment", "body": "   "}, 400, "body"),
        ({"kind": "comment"}, 400, "body"),
        ({"kind": "comment", "body": "a\x00b"}, 400, "body"),
        ({"kind": "tag", "label": " spaced "}, 400, "label"),
        ({"kind": "tag"}, 400, "label"),
        ({"kind": "comment", "body": "x", "branch_id": "nope"}, 400, "branch_id"),
        ({"kind": "comment", "body": "x", "branch_id": "main", "turn": 99}, 400, "turn"),
        ({"kind": "comment", "body": "x", "turn": 2}, 400, "branch_id"),
        ({"kind": "comment", "body": "x", "branch_id": "a\x00"}, 422, "branch_id"),
    ],
)
def test_refused_writes_name_the_field(trip, caller, definitions, body, status, field):
    response = _post(caller, body)
    assert response.status_code == status, response.content
    assert response.json()["field"] == field
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]
    assert not Annotation.objects.exists()


def test_duplicate_tag_is_400(trip, caller):
    assert _post(caller, {"kind": "tag", "label": "x"}).status_code == 201
    response = _post(caller, {"kind": "tag", "label": "x"}, kind="other_annotator")
    assert response.status_code == 400 and response.json()["field"] == "label"


def test_annotating_an_unknown_session_is_404(trip, caller):
    response = caller("annotator").send(
        "POST", f"{API}/sessions/nope/annotations/", {"kind": "tag", "label": "x"}
    )
    assert response.status_code == 404 and response.json()["field"] == "session_id"


def test_patch_and_delete_own(trip, users, caller, definitions):
    score = score_set(
        user=users["annotator"], target=Target(SID, "main", 1), definition="quality", value=2
    )
    url = f"{API}/annotations/{score.pk}/"
    response = caller("annotator").send("PATCH", url, {"value": 5, "body": "better"})
    assert response.status_code == 200
    assert (response.json()["value"], response.json()["body"]) == (5.0, "better")
    bad = caller("annotator").send("PATCH", url, {"value": 6})
    assert bad.status_code == 400 and bad.json()["field"] == "value"
    unknown = caller("annotator").send("PATCH", url, {"colour": "red"})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == [
        "body",
        "payload",
        "colour",
    ]
    assert caller("annotator").send("DELETE", url).status_code == 204
    assert caller("annotator").send("DELETE", url).status_code == 404
    assert caller("annotator").send("PATCH", url, {"body": "x"}).status_code == 404


@pytest.mark.parametrize("ident", ["abc", "0", "-1", "1.5", "99999999999999999999999", "%00"])
def test_bad_annotation_ids(trip, caller, ident):
    response = caller("annotator").send("DELETE", f"{API}/annotations/{ident}/")
    assert response.status_code in (404, 422), response.content
    assert response["Content-Type"].startswith("application/json")


def test_score_definitions(caller, definitions):
    got = caller("viewer").get(f"{API}/score-definitions/").json()
    assert [d["name"] for d in got] == ["helpful", "quality", "failure"]
    assert got[1] == {
        "name": "quality",
        "kind": "numeric",
        "min_value": 1.0,
        "max_value": 5.0,
        "labels": [],
        "description": "",
        "position": 1,
        "archived": False,
    }
    assert got[2]["labels"] == ["none", "tool", "facts"]
    every = caller("viewer").get(f"{API}/score-definitions/?archived=true").json()
    assert "old" in [d["name"] for d in every]


# ---- Review status ----------------------------------------------------------------------------


def test_review_status(trip, users, caller):
    url = f"{API}/sessions/{SID_SEG}/review/"
    assert caller("viewer").get(url).json()["status"] == "unreviewed"
    response = caller("annotator").send("PUT", url, {"status": "in_review", "assignee": "other"})
    assert response.status_code == 200, response.content
    assert (
        response.json()["status"],
        response.json()["assignee"],
        response.json()["updated_by"],
    ) == (
        "in_review",
        "other",
        "annotator",
    )
    # only the status: the assignee stays
    kept = caller("annotator").send("PUT", url, {"status": "reviewed"}).json()
    assert (kept["status"], kept["assignee"]) == ("reviewed", "other")
    # null unassigns
    assert caller("annotator").send("PUT", url, {"assignee": None}).json()["assignee"] is None
    review = SessionReview.objects.get(pk=SID)
    assert review.status == "reviewed" and review.assignee is None
    bad = caller("annotator").send("PUT", url, {"status": "done"})
    assert bad.status_code == 400 and bad.json()["field"] == "status"
    nobody = caller("annotator").send("PUT", url, {"assignee": "ghost"})
    assert nobody.status_code == 400 and nobody.json()["field"] == "assignee"
    from conversations.models import AuditEntry

    audited = AuditEntry.objects.count()
    same = caller("annotator").send("PUT", url, {})
    assert same.status_code == 200 and same.json()["status"] == "reviewed"
    assert AuditEntry.objects.count() == audited  # nothing changed, nothing written
    assert caller("annotator").send("PUT", f"{API}/sessions/nope/review/", {}).status_code == 404
    typo = caller("annotator").send("PUT", url, {"state": "reviewed"})
    assert typo.status_code == 422


# ---- Failures -------------------------------------------------------------------------------


def test_a_database_outage_is_json_503(caller, monkeypatch):
    from django.db import OperationalError

    from dashboard.review import selectors

    def down(**kwargs):
        raise OperationalError("connection refused")

    viewer = caller("viewer")
    monkeypatch.setattr(selectors, "session_list", down)
    response = viewer.get(f"{API}/sessions/")
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json() == {"detail": "The database is unavailable; try again shortly."}


def test_a_bug_is_json_500_without_a_traceback(caller, monkeypatch):
    from dashboard.review import selectors

    def broken(**kwargs):
        raise RuntimeError("secret internals")

    viewer = caller("viewer")
    monkeypatch.setattr(selectors, "session_list", broken)
    response = viewer.get(f"{API}/sessions/")
    assert response.status_code == 500 and response.json() == {"detail": "Server error."}
    assert b"secret" not in response.content
