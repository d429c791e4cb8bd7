"""The review queue (/review/, /review/next/): the oldest session assigned to me or to nobody
that is not reviewed; "next" moves on (setting the status of the session left); the end and
the empty queue have a page of their own; a reviewer can go through 20 sessions in a row."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from conversations import reviews
from conversations.models import ReviewStatus, SessionReview
from dashboard.review.annotate import queue_url
from tests.conftest import grant
from tests.support.builders import Writer

pytestmark = pytest.mark.django_db

QUEUE = "/review/"
NEXT = "/review/next/"


def _user(django_user_model, name: str, *codenames: str):
    user = django_user_model.objects.create_user(username=name, password=f"{name}-pass-1")
    return grant(user, *codenames)


@pytest.fixture
def annotator(db, django_user_model):
    return _user(django_user_model, "ann", "view_agentsession", "annotate")


@pytest.fixture
def other(db, django_user_model):
    return _user(django_user_model, "other", "view_agentsession", "annotate")


def _client(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _sessions(count: int, prefix: str = "q") -> list[str]:
    """``count`` one-turn sessions, created in id order (ties of created_at break by id)."""
    ids = [f"{prefix}{n:02d}" for n in range(count)]
    for sid in ids:
        Writer(sid).turns(1)
    return ids


def test_routes_are_the_documented_ones():
    assert reverse("review_queue") == QUEUE
    assert reverse("review_next") == NEXT


def test_queue_needs_login_and_the_annotate_permission(db, django_user_model):
    _sessions(1)
    anonymous = _client().get(QUEUE)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("login"))
    assert _client().post(NEXT, {"after": "q00"}).status_code == 302
    viewer = _user(django_user_model, "viewer", "view_agentsession")
    assert _client(viewer).get(QUEUE).status_code == 403
    assert _client(viewer).post(NEXT, {"after": "q00", "status": "reviewed"}).status_code == 403
    assert not SessionReview.objects.exists()


def test_empty_queue_is_a_friendly_page(annotator):
    response = _client(annotator).get(QUEUE)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Nothing left to review" in page and 'id="queue-empty"' in page


def test_queue_opens_the_oldest_unreviewed_session_without_writing(annotator):
    _sessions(3)
    client = _client(annotator)
    response = client.get(QUEUE)  # the start page: its form POSTs to "next"
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="queue-start-form"' in page and f'action="{NEXT}"' in page
    assert 'method="post"' in page and "csrfmiddlewaretoken" in page
    assert not SessionReview.objects.exists()  # a GET never writes
    opened = client.post(NEXT)  # no "after": the oldest session, claimed
    assert opened.status_code == 303 and opened["Location"] == queue_url("q00")
    assert SessionReview.objects.get(pk="q00").assignee == annotator


def test_queue_skips_reviewed_and_sessions_assigned_to_others(annotator, other):
    _sessions(4)
    reviews.review_status_set(user=other, session_id="q00", status=ReviewStatus.REVIEWED)
    reviews.review_status_set(user=other, session_id="q01", assignee=other)
    reviews.review_status_set(user=other, session_id="q02", assignee=annotator)
    assert _client(annotator).post(NEXT)["Location"] == queue_url("q02")
    assert _client(other).post(NEXT)["Location"] == queue_url("q01")


def test_next_sets_the_status_of_the_session_left_and_opens_the_next(annotator):
    _sessions(3)
    client = _client(annotator)
    response = client.post(NEXT, {"after": "q00", "status": "reviewed"})
    assert response.status_code == 303 and response["Location"] == queue_url("q01")
    assert SessionReview.objects.get(pk="q00").status == ReviewStatus.REVIEWED
    fix = client.post(NEXT, {"after": "q01", "status": "needs_fix"})
    assert fix["Location"] == queue_url("q02")
    assert SessionReview.objects.get(pk="q01").status == ReviewStatus.NEEDS_FIX
    skip = client.post(NEXT, {"after": "q02"})  # skip: no status change
    assert skip.status_code == 303 and skip["Location"] == reverse("review_queue") + "?end=1"
    assert not SessionReview.objects.filter(pk="q02").exists()


def test_end_of_the_queue_offers_to_start_again(annotator):
    _sessions(2)
    client = _client(annotator)
    client.post(NEXT, {"after": "q00"})
    end = client.get(client.post(NEXT, {"after": "q01"})["Location"])
    page = end.content.decode()
    assert end.status_code == 200 and "End of the queue" in page and 'id="queue-restart"' in page
    # Once everything is reviewed the end page says the queue is empty.
    for sid in ("q00", "q01"):
        reviews.review_status_set(user=annotator, session_id=sid, status="reviewed")
    done = client.get(reverse("review_queue") + "?end=1").content.decode()
    assert "Nothing left to review" in done


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"after": "q00", "status": "finished"}, 400),
        ({"after": "ghost", "status": "reviewed"}, 404),
        ({"after": "", "status": "reviewed"}, 404),
    ],
)
def test_bad_next_input(annotator, data, code):
    _sessions(1)
    response = _client(annotator).post(NEXT, data)
    assert response.status_code == code
    assert response.content  # a message, never a traceback
    assert not SessionReview.objects.exists()


def test_next_is_post_only_and_keeps_csrf(annotator):
    _sessions(2)
    assert _client(annotator).get(NEXT).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(annotator)
    assert strict.post(NEXT, {"after": "q00", "status": "reviewed"}).status_code == 403
    assert not SessionReview.objects.exists()


def test_session_page_from_the_queue_shows_the_queue_bar(annotator):
    _sessions(1)
    page = _client(annotator).get(queue_url("q00")).content.decode()
    assert 'class="queue-bar in-queue"' in page and 'data-queue="true"' in page
    assert 'name="after" value="q00"' in page
    assert 'id="queue-reviewed"' in page and 'id="queue-skip"' in page


def test_twenty_sessions_in_a_row(annotator, other):
    ids = _sessions(22)
    reviews.review_status_set(user=other, session_id=ids[5], assignee=other)
    reviews.review_status_set(user=other, session_id=ids[9], status="reviewed")
    client = _client(annotator)
    assert client.get(QUEUE).status_code == 200
    location = client.post(NEXT)["Location"]
    seen = []
    while location.startswith("/sessions/"):
        assert client.get(location).status_code == 200
        sid = location.split("/sessions/", 1)[1].rsplit("/?queue=1", 1)[0]
        seen.append(sid)
        location = client.post(NEXT, {"after": sid, "status": "reviewed"})["Location"]
    assert seen == [s for s in ids if s not in (ids[5], ids[9])]
    assert len(seen) == 20
    assert location == reverse("review_queue") + "?end=1"
    assert "Nothing left to review" in client.get(location).content.decode()
    statuses = dict(SessionReview.objects.values_list("session_id", "status"))
    assert all(statuses[s] == "reviewed" for s in seen)
