"""The session page's review writes (dashboard/review/annotate.py) and what the pages show of
them: every endpoint for anonymous, viewer, annotator, the author and someone else; bad input;
CSRF; the session and compare pages with annotations (write controls only for annotators,
sanitised comments, branch figures, which branch scored better) and their query counts."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations import reviews
from conversations.models import (
    Annotation,
    AnnotationKind,
    AuditEntry,
    ReviewStatus,
    ScoreDefinition,
    SessionReview,
)
from conversations.reviews import Target
from dashboard.links import compare_url, session_url
from tests.conftest import grant
from tests.dashboard.review.test_hostile_content import _assert_inert
from tests.support.builders import Writer

pytestmark = pytest.mark.django_db

SID = "review/s1"  # a slash in the id: every URL goes through reverse()


# ---- Fixtures ------------------------------------------------------------------------------


@pytest.fixture
def definitions(db):
    return {
        "helpful": ScoreDefinition.objects.create(name="helpful", kind="boolean", position=0),
        "quality": ScoreDefinition.objects.create(
            name="quality", kind="numeric", min_value=1, max_value=5, position=1
        ),
        "failure": ScoreDefinition.objects.create(
            name="failure",
            kind="categorical",
            labels=["wrong-tool", "hallucination", "off-topic"],
            position=2,
        ),
    }


@pytest.fixture
def session(db):
    """main: 4 turns; 'alt' from turn 3 (+2 turns)."""
    w = Writer(SID)
    w.turns(4)
    w.branch(3, "alt")
    w.turns(2, start=3)
    return SID


def _user(django_user_model, name: str, *codenames: str):
    user = django_user_model.objects.create_user(username=name, password=f"{name}-pass-1")
    return grant(user, *codenames)


@pytest.fixture
def annotator(db, django_user_model):
    return _user(django_user_model, "ann", "view_agentsession", "annotate")


@pytest.fixture
def other(db, django_user_model):
    return _user(django_user_model, "other", "view_agentsession", "annotate")


@pytest.fixture
def viewer(db, django_user_model):
    return _user(django_user_model, "viewer", "view_agentsession")


def _client(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _url(name: str, session_id: str = SID, **kwargs) -> str:
    return reverse(name, kwargs={"session_id": session_id, **kwargs})


def _post(client: Client, url: str, body) -> object:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json")


# ---- Who may write -------------------------------------------------------------------------

WRITES = [
    ("annotation_score", {}, {"branch_id": "main", "turn": 1, "definition": "helpful", "value": 1}),
    ("annotation_score_clear", {}, {"branch_id": "main", "turn": 1, "definition": "helpful"}),
    ("annotation_comment", {}, {"branch_id": "main", "turn": 1, "body": "hi"}),
    ("annotation_tag", {}, {"branch_id": "main", "turn": 1, "label": "x"}),
    ("annotation_review", {}, {"status": "reviewed"}),
    ("annotation_edit", {"annotation_id": 1}, {"body": "x"}),
    ("annotation_delete", {"annotation_id": 1}, {}),
]


@pytest.mark.parametrize(("name", "extra", "body"), WRITES, ids=[w[0] for w in WRITES])
def test_anonymous_is_sent_to_login_and_nothing_is_written(session, definitions, name, extra, body):
    response = _post(_client(), _url(name, **extra), body)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert not Annotation.objects.exists() and not SessionReview.objects.exists()


@pytest.mark.parametrize(("name", "extra", "body"), WRITES, ids=[w[0] for w in WRITES])
def test_viewer_without_annotate_gets_403(session, definitions, viewer, name, extra, body):
    response = _post(_client(viewer), _url(name, **extra), body)
    assert response.status_code == 403
    assert not Annotation.objects.exists() and not SessionReview.objects.exists()


@pytest.mark.parametrize(("name", "extra", "body"), WRITES, ids=[w[0] for w in WRITES])
def test_writes_are_post_only(session, definitions, annotator, name, extra, body):
    assert _client(annotator).get(_url(name, **extra)).status_code == 405


def test_csrf_is_enforced(session, definitions, annotator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(annotator)
    body = json.dumps({"branch_id": "main", "turn": 1, "definition": "helpful", "value": 1})
    url = _url("annotation_score")
    assert client.post(url, body, content_type="application/json").status_code == 403
    assert not Annotation.objects.exists()
    page = client.get(session_url(SID))  # the page carries the token the script sends
    token = page.cookies["csrftoken"].value
    response = client.post(url, body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200
    assert Annotation.objects.count() == 1


# ---- Scores ----------------------------------------------------------------------------------


def test_score_set_answers_with_the_annotation_and_the_page_pieces(session, definitions, annotator):
    response = _post(
        _client(annotator),
        _url("annotation_score"),
        {"branch_id": "main", "turn": 2, "definition": "helpful", "value": 1},
    )
    assert response.status_code == 200
    data = response.json()
    assert data["annotation"]["value"] == 1 and data["annotation"]["mine"] is True
    assert data["target"] == {"branch_id": "main", "turn": 2, "kind": "turn"}
    assert 'data-turn="2"' in data["html"]["bar"]
    assert 'class="thumb thumb-up" data-action="thumb"' in data["html"]["bar"]
    assert 'data-value="1" aria-pressed="true"' in data["html"]["bar"]
    assert "helpful" in data["html"]["summary"] and "100% up" in data["html"]["summary"]
    assert data["html"]["branch"]["id"] == "main"
    assert "100% up" in data["html"]["branch"]["html"]
    row = Annotation.objects.get()
    assert (row.kind, row.branch_id, row.turn, row.value, row.author) == (
        "score",
        "main",
        2,
        1.0,
        annotator,
    )
    # The first annotation starts the review.
    assert SessionReview.objects.get(pk=SID).status == ReviewStatus.IN_REVIEW
    assert data["review"]["status"] == "in_review"


def test_score_set_again_changes_my_score_and_clear_removes_it(session, definitions, annotator):
    client = _client(annotator)
    target = {"branch_id": "alt", "turn": 4, "definition": "quality"}
    assert _post(client, _url("annotation_score"), {**target, "value": 2}).status_code == 200
    assert _post(client, _url("annotation_score"), {**target, "value": 4.5}).status_code == 200
    assert list(Annotation.objects.values_list("value", flat=True)) == [4.5]
    response = _post(client, _url("annotation_score_clear"), target)
    assert response.status_code == 200
    assert response.json()["annotation"] is None
    assert not Annotation.objects.exists()
    again = _post(client, _url("annotation_score_clear"), target)
    assert again.status_code == 400 and again.json()["field"] == "definition"


def test_clear_removes_only_my_score(session, definitions, annotator, other):
    reviews.score_set(user=other, target=Target(SID, "main", 1), definition="helpful", value=0)
    response = _post(
        _client(annotator),
        _url("annotation_score_clear"),
        {"branch_id": "main", "turn": 1, "definition": "helpful"},
    )
    assert response.status_code == 400
    assert Annotation.objects.filter(author=other).count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"branch_id": "main", "turn": 1, "definition": "nope", "value": 1}, "definition"),
        ({"branch_id": "main", "turn": 1, "definition": "quality", "value": 9}, "value"),
        ({"branch_id": "main", "turn": 1, "definition": "quality", "value": "abc"}, "value"),
        ({"branch_id": "main", "turn": 1, "definition": "helpful", "value": 3}, "value"),
        ({"branch_id": "main", "turn": 1, "definition": "failure", "value": "meh"}, "value"),
        ({"branch_id": "main", "turn": 1, "definition": "helpful"}, "value"),
        ({"branch_id": "main", "turn": 99, "definition": "helpful", "value": 1}, "turn"),
        ({"branch_id": "main", "turn": "1", "definition": "helpful", "value": 1}, "turn"),
        ({"branch_id": "main", "turn": -1, "definition": "helpful", "value": 1}, "turn"),
        ({"branch_id": "main", "turn": True, "definition": "helpful", "value": 1}, "turn"),
        ({"branch_id": "ghost", "turn": 1, "definition": "helpful", "value": 1}, "branch_id"),
        ({"branch_id": 5, "turn": 1, "definition": "helpful", "value": 1}, "branch_id"),
        ({"branch_id": "main", "turn": 1, "definition": 3, "value": 1}, "definition"),
        ({"turn": 2, "definition": "helpful", "value": 1}, "branch_id"),
        (
            {"branch_id": "main", "turn": 1, "definition": "helpful", "value": 1, "comment": 7},
            "comment",
        ),
    ],
)
def test_bad_score_input_is_a_400_with_the_field(session, definitions, annotator, body, field):
    response = _post(_client(annotator), _url("annotation_score"), body)
    assert response.status_code == 400, response.content
    data = response.json()
    assert data["field"] == field and data["error"]
    assert not Annotation.objects.exists()


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '"text"', "\xff"])
def test_a_body_that_is_not_a_json_object_is_a_400(session, definitions, annotator, raw):
    response = _post(_client(annotator), _url("annotation_score"), raw.encode("latin-1"))
    assert response.status_code == 400
    assert response.json()["error"] == "Send a JSON object."


def test_archived_definition_is_refused(session, definitions, annotator):
    ScoreDefinition.objects.filter(name="quality").update(archived=True)
    response = _post(
        _client(annotator),
        _url("annotation_score"),
        {"branch_id": "main", "turn": 1, "definition": "quality", "value": 3},
    )
    assert response.status_code == 400 and response.json()["field"] == "definition"


def test_unknown_session_is_a_404(session, definitions, annotator):
    client = _client(annotator)
    body = {"branch_id": "main", "turn": 1, "definition": "helpful", "value": 1}
    assert _post(client, _url("annotation_score", "ghost"), body).status_code == 404
    assert _post(client, _url("annotation_comment", "ghost"), {"body": "x"}).status_code == 404
    assert (
        _post(client, _url("annotation_review", "ghost"), {"status": "reviewed"}).status_code == 404
    )
    assert client.get(_url("annotations_get", "ghost")).status_code == 404


# ---- Comments and tags -----------------------------------------------------------------------


def test_comment_add_edit_delete_by_its_author(session, definitions, annotator):
    client = _client(annotator)
    response = _post(
        client, _url("annotation_comment"), {"branch_id": "main", "turn": 3, "body": "**bold**"}
    )
    assert response.status_code == 201
    note = response.json()["annotation"]
    assert note["kind"] == "comment" and note["body"] == "**bold**"
    assert "<strong>bold</strong>" in response.json()["html"]["bar"]
    edited = _post(client, _url("annotation_edit", annotation_id=note["id"]), {"body": "plain"})
    assert edited.status_code == 200 and edited.json()["annotation"]["body"] == "plain"
    deleted = _post(client, _url("annotation_delete", annotation_id=note["id"]), {})
    assert deleted.status_code == 200
    assert "note-comment" not in deleted.json()["html"]["bar"]
    assert not Annotation.objects.exists()
    actions = list(AuditEntry.objects.filter(kind="comment").values_list("action", flat=True))
    assert sorted(actions) == ["created", "deleted", "updated"]


def test_comment_is_rendered_sanitised(session, definitions, annotator):
    body = "<script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror=alert(1)>"
    response = _post(
        _client(annotator), _url("annotation_comment"), {"branch_id": "", "turn": 0, "body": body}
    )
    bar = response.json()["html"]["bar"]
    assert "<script>" not in bar and "onerror=" not in bar.replace("onerror=alert", "")
    assert "&lt;script&gt;" in bar
    assert 'href="javascript' not in bar
    page = _client(annotator).get(session_url(SID)).content.decode()
    assert "<script>alert(1)</script>" not in page
    _assert_inert(page)  # no script, svg, img, handler or javascript: URL anywhere
    _assert_inert(bar)


@pytest.mark.parametrize(
    ("body", "field"),
    [({"body": "   "}, "body"), ({"body": "x" * 20_001}, "body"), ({"body": None}, "body")],
)
def test_bad_comment_is_a_400(session, definitions, annotator, body, field):
    response = _post(
        _client(annotator), _url("annotation_comment"), {"branch_id": "main", "turn": 1, **body}
    )
    assert response.status_code == 400 and response.json()["field"] == field


def test_others_annotations_cannot_be_edited_or_deleted(session, definitions, annotator, other):
    theirs = reviews.comment_add(user=other, target=Target(SID, "main", 1), body="theirs")
    tag = reviews.tag_add(user=other, target=Target(SID, "main", 1), tag="their-tag")
    client = _client(annotator)
    for note in (theirs, tag):
        edit = _post(client, _url("annotation_edit", annotation_id=note.pk), {"body": "mine now"})
        assert edit.status_code == 403
        assert edit.json()["error"] == reviews.NOT_AUTHOR
        assert (
            _post(client, _url("annotation_delete", annotation_id=note.pk), {}).status_code == 403
        )
    theirs.refresh_from_db()
    assert theirs.body == "theirs" and Annotation.objects.count() == 2
    # ... and the page offers no edit/delete on them.
    page = client.get(session_url(SID, "main")).content.decode()
    assert f'data-action="edit" data-id="{theirs.pk}"' not in page
    assert f'data-action="delete" data-id="{tag.pk}"' not in page


def test_unknown_annotation_or_one_of_another_session_is_a_404(session, definitions, annotator):
    Writer("elsewhere").turns(1)
    mine = reviews.comment_add(user=annotator, target=Target("elsewhere", "main", 1), body="x")
    client = _client(annotator)
    assert (
        _post(client, _url("annotation_edit", annotation_id=mine.pk), {"body": "y"}).status_code
        == 404
    )
    assert _post(client, _url("annotation_delete", annotation_id=99999), {}).status_code == 404
    mine.refresh_from_db()
    assert mine.body == "x"


def test_edit_with_nothing_to_change_is_a_400(session, definitions, annotator):
    mine = reviews.comment_add(user=annotator, target=Target(SID, "main", 1), body="x")
    response = _post(_client(annotator), _url("annotation_edit", annotation_id=mine.pk), {})
    assert response.status_code == 400


def test_tags_add_duplicate_and_remove(session, definitions, annotator, other):
    client = _client(annotator)
    target = {"branch_id": "alt", "turn": 3}
    added = _post(client, _url("annotation_tag"), {**target, "label": "dates"})
    assert added.status_code == 201
    assert "#dates" in added.json()["html"]["bar"]
    again = _post(_client(other), _url("annotation_tag"), {**target, "label": "dates"})
    assert again.status_code == 400 and again.json()["field"] == "label"
    for bad in ("", " padded ", "x" * 65):
        response = _post(client, _url("annotation_tag"), {**target, "label": bad})
        assert response.status_code == 400 and response.json()["field"] == "label"
    tag_id = added.json()["annotation"]["id"]
    assert _post(client, _url("annotation_delete", annotation_id=tag_id), {}).status_code == 200
    assert not Annotation.objects.filter(kind=AnnotationKind.TAG).exists()


def test_branch_and_session_targets(session, definitions, annotator):
    client = _client(annotator)
    branch = _post(
        client,
        _url("annotation_score"),
        {"branch_id": "alt", "turn": 0, "definition": "quality", "value": 5},
    )
    assert branch.json()["target"]["kind"] == "branch"
    whole = _post(
        client,
        _url("annotation_score"),
        {"branch_id": "", "turn": 0, "definition": "failure", "value": "off-topic"},
    )
    assert whole.json()["target"]["kind"] == "session"
    assert "branch" not in whole.json()["html"]
    assert "off-topic" in whole.json()["html"]["summary"]


# ---- Review status ---------------------------------------------------------------------------


def test_review_status_and_assignee(session, definitions, annotator, other):
    client = _client(annotator)
    response = _post(
        client, _url("annotation_review"), {"status": "needs_fix", "assignee": "other"}
    )
    assert response.status_code == 200
    review = SessionReview.objects.get(pk=SID)
    assert (review.status, review.assignee) == ("needs_fix", other)
    assert "needs fix" in response.json()["html"]["summary"]
    assert "assigned to <strong>other</strong>" in response.json()["html"]["summary"]
    _post(client, _url("annotation_review"), {"assignee": "me"})
    assert SessionReview.objects.get(pk=SID).assignee == annotator
    _post(client, _url("annotation_review"), {"assignee": ""})
    review = SessionReview.objects.get(pk=SID)
    assert review.assignee is None and review.status == "needs_fix"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status": 3}, "status"),
        ({"assignee": "nobody-here"}, "assignee"),
        ({"assignee": 12}, "assignee"),
        ({}, None),
    ],
)
def test_bad_review_input_is_a_400(session, definitions, annotator, body, field):
    response = _post(_client(annotator), _url("annotation_review"), body)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert not SessionReview.objects.exists()


# ---- The pages -------------------------------------------------------------------------------


def _annotate(session_id: str, users, definitions, turns: int) -> None:
    """Scores, comments and tags by each user on the first ``turns`` turns of main and alt."""
    for n, user in enumerate(users):
        for turn in range(1, turns + 1):
            for branch in ("main", "alt"):
                target = Target(session_id, branch, turn)
                reviews.score_set(
                    user=user, target=target, definition="helpful", value=(turn + n) % 2
                )
                reviews.score_set(
                    user=user, target=target, definition="quality", value=1 + (turn + n) % 5
                )
                reviews.comment_add(user=user, target=target, body=f"c{n} *{turn}*")
                if n == 0:
                    reviews.tag_add(user=user, target=target, tag=f"t{turn % 3}")
        reviews.score_set(
            user=user, target=Target(session_id), definition="failure", value="off-topic"
        )


def test_viewer_sees_annotations_but_no_write_controls(session, definitions, annotator, viewer):
    _annotate(SID, [annotator], definitions, 2)
    page = _client(viewer).get(session_url(SID, "main")).content.decode()
    assert 'class="note-comment"' in page and "#t1" in page
    assert 'helpful <strong class="chip-value">50% up' in page
    for control in ('data-action="thumb"', 'id="review-form"', 'id="queue-bar"', "Comment <kbd>"):
        assert control not in page
    mine = _client(annotator).get(session_url(SID, "main")).content.decode()
    for control in ('data-action="thumb"', 'id="review-form"', 'id="queue-bar"', "Comment <kbd>"):
        assert control in mine
    assert 'data-can-annotate="true"' in mine and 'data-can-annotate="false"' in page
    assert 'data-definitions="[{&quot;id&quot;' in page


def test_page_shows_branch_figures_summary_and_status(session, definitions, annotator):
    reviews.score_set(user=annotator, target=Target(SID, "alt", 3), definition="helpful", value=1)
    reviews.score_set(user=annotator, target=Target(SID, "alt", 4), definition="helpful", value=0)
    reviews.score_set(user=annotator, target=Target(SID, "main", 1), definition="quality", value=4)
    reviews.review_status_set(user=annotator, session_id=SID, status="reviewed", assignee=annotator)
    page = _client(annotator).get(session_url(SID, "alt")).content.decode()
    assert 'data-branch-scores="alt"><span class="score-chip static"' in page
    assert 'helpful <strong class="chip-value">50% up</strong>' in page
    assert 'quality <strong class="chip-value">4</strong>' in page  # main's, in the tree
    assert 'id="review-status"' in page and ">reviewed</span>" in page
    assert "assigned to <strong>ann</strong>" in page
    assert "3 scores · 0 comments · 0 tags" in page


def test_annotations_get_renders_bars_of_fragment_turns(session, definitions, annotator, viewer):
    reviews.tag_add(user=annotator, target=Target(SID, "main", 1), tag="early")
    url = _url("annotations_get") + "?branch=main&turns=1,2,x"
    data = _client(viewer).get(url).json()
    assert set(data["bars"]) == {"1", "2"}
    assert "#early" in data["bars"]["1"] and "#early" not in data["bars"]["2"]
    assert data["targets"][0]["tags"][0]["label"] == "early"
    assert [d["name"] for d in data["definitions"]] == ["helpful", "quality", "failure"]
    assert [d["key"] for d in data["definitions"]] == ["1", "3", "4"]
    assert _client().get(url).status_code == 302


def test_compare_shows_each_branch_scores_and_the_better_one(
    session, definitions, annotator, other
):
    for user in (annotator, other):
        reviews.score_set(user=user, target=Target(SID, "main", 3), definition="quality", value=2)
        reviews.score_set(user=user, target=Target(SID, "alt", 3), definition="quality", value=5)
    reviews.score_set(user=annotator, target=Target(SID, "alt", 0), definition="helpful", value=1)
    reviews.score_set(user=annotator, target=Target(SID, "main", 1), definition="quality", value=5)
    page = _client(annotator).get(compare_url(SID, "main", "alt")).content.decode()
    assert 'id="compare-verdict" class="compare-verdict" data-better="b"' in page
    assert "(right) scored better" in page
    assert 'data-definition="quality" data-better="b"' in page
    assert 'data-definition="helpful" data-better=""' in page  # main has no helpful score
    # Turn 1 of main precedes the fork (turn 3): not part of the comparison.
    assert "<strong>2</strong>" in page and "<strong>5</strong>" in page
    assert page.count("data-turn-scores") == 2


def test_compare_without_scores_says_so(session, definitions, viewer):
    page = _client(viewer).get(compare_url(SID, "main", "alt")).content.decode()
    assert "No scores on these branches yet" in page


# ---- Query counts ----------------------------------------------------------------------------


def _count(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries)


@pytest.fixture
def sizes(definitions, django_user_model):
    users = [_user(django_user_model, f"u{n}", "view_agentsession", "annotate") for n in range(3)]
    for name, turns, annotated, authors in (("small", 6, 1, users[:1]), ("large", 40, 10, users)):
        w = Writer(name)
        w.turns(turns)
        w.branch(turns // 2, "alt")
        w.turns(turns // 2, start=turns // 2)
        _annotate(name, authors, definitions, annotated)
    assert (
        Annotation.objects.filter(session_id="large").count()
        > 20 * Annotation.objects.filter(session_id="small").count()
    )
    return users[0]


@pytest.mark.parametrize(
    "url_for",
    [
        lambda sid: session_url(sid, "main"),
        lambda sid: session_url(sid, "alt"),
        lambda sid: session_url(sid, "main") + "&queue=1",
        lambda sid: compare_url(sid, "main", "alt"),
        lambda sid: (
            reverse("annotations_get", kwargs={"session_id": sid}) + "?branch=main&turns=1,2,3,4,5"
        ),
    ],
    ids=["detail", "detail-branch", "detail-queue", "compare", "bars"],
)
@pytest.mark.parametrize("who", ["annotator", "viewer"])
def test_pages_with_annotations_run_constant_queries(sizes, reviewer, url_for, who):
    client = _client(sizes if who == "annotator" else reviewer)
    small, large = (_count(client, url_for(sid)) for sid in ("small", "large"))
    assert small == large


def test_session_page_query_budget_with_annotations(sizes, reviewer):
    # The page's 10 + definitions + annotations + review (+ the assignee list for annotators)
    # + 2 for the traces (issue 16: the session's traces and their spans, aggregated).
    assert _count(_client(reviewer), session_url("large", "alt")) == 15
    assert _count(_client(sizes), session_url("large", "alt")) == 16


def test_write_answers_run_constant_queries(sizes):
    client = _client(sizes)

    def write(sid: str) -> int:
        with CaptureQueriesContext(connection) as queries:
            response = _post(
                client,
                _url("annotation_score", sid),
                {"branch_id": "main", "turn": 1, "definition": "quality", "value": 3},
            )
        assert response.status_code == 200
        return len(queries)

    assert write("small") == write("large")


@pytest.mark.parametrize(
    "session_id",
    ["x/annotations", "x/annotations/score", "x/annotations/7/delete", "x/annotationsy"],
)
def test_ids_ending_like_an_annotation_route_keep_their_own_page(definitions, viewer, session_id):
    Writer(session_id).turns(1)
    response = _client(viewer).get(session_url(session_id))
    assert response.status_code == 200
    assert response.context["detail"].session_id == session_id
    bars = _client(viewer).get(_url("annotations_get", session_id) + "?branch=main&turns=1")
    assert set(bars.json()["bars"]) == {"1"}
