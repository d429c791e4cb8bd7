"""The queue pages claim (dashboard/review/annotate.py: /review/ is a start page whose form
POSTs to /review/next/, which opens and claims): two reviewers pressing "next" at once get two
different sessions (threads, each its own connection, on both databases); a skip (``n``)
gives back a session the queue had claimed; "reviewed" / "needs fix" keep the claim; a
session a person assigned is never taken; the start page writes nothing and runs constant
queries."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations import reviews
from conversations.models import AuditEntry, ReviewStatus, SessionReview
from dashboard.review.annotate import queue_url
from tests.conftest import grant
from tests.support.builders import Writer

QUEUE = "/review/"
NEXT = "/review/next/"


def _reviewer(django_user_model, name: str):
    user = django_user_model.objects.create_user(username=name, password=f"{name}-pass-1")
    return grant(user, "view_agentsession", "annotate")


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _sessions(count: int, prefix: str = "v") -> list[str]:
    ids = [f"{prefix}{n:02d}" for n in range(count)]
    for sid in ids:
        Writer(sid).turns(1)
    return ids


def _opened(response) -> str:
    assert response.status_code == 303, response.content
    location = response["Location"]
    assert location.startswith("/sessions/") and location.endswith("/?queue=1"), location
    return location.split("/sessions/", 1)[1].rsplit("/?queue=1", 1)[0]


def _assignee(session_id: str) -> str | None:
    review = SessionReview.objects.select_related("assignee").filter(pk=session_id).first()
    return review.assignee.username if review and review.assignee else None


@pytest.fixture
def alice(db, django_user_model):
    return _reviewer(django_user_model, "alice")


@pytest.fixture
def bob(db, django_user_model):
    return _reviewer(django_user_model, "bob")


@pytest.mark.django_db
def test_the_start_page_writes_nothing_and_its_form_claims(alice):
    _sessions(2)
    client = _client(alice)
    page = client.get(QUEUE).content.decode()
    assert 'id="queue-start-form"' in page and "queue_start.js" in page
    assert 'id="queue-open"' in page and "autofocus" in page
    assert not SessionReview.objects.exists() and not AuditEntry.objects.exists()
    assert _opened(client.post(NEXT)) == "v00"
    assert _assignee("v00") == "alice"


@pytest.mark.django_db
def test_two_reviewers_starting_one_after_the_other(alice, bob):
    _sessions(3)
    assert _opened(_client(alice).post(NEXT)) == "v00"
    assert _opened(_client(bob).post(NEXT)) == "v01"
    assert _opened(_client(bob).post(NEXT, {"after": "v01", "status": "reviewed"})) == "v02"
    # bob reviewed v01, keeps it (his record); v00 stays alice's.
    assert (_assignee("v00"), _assignee("v01"), _assignee("v02")) == ("alice", "bob", "bob")
    assert SessionReview.objects.get(pk="v01").status == ReviewStatus.REVIEWED


@pytest.mark.django_db
def test_skipping_gives_the_claim_back(alice, bob):
    _sessions(2)
    client = _client(alice)
    assert _opened(client.post(NEXT)) == "v00"
    assert _opened(client.post(NEXT, {"after": "v00"})) == "v01"  # n: skip
    assert not SessionReview.objects.filter(pk="v00").exists()  # as before the claim
    assert _assignee("v01") == "alice"
    rows = AuditEntry.objects.filter(session_id="v00").order_by("id")
    actions = list(rows.values_list("action", flat=True))
    assert actions == ["claimed", "released"]
    assert _opened(_client(bob).post(NEXT)) == "v00"  # bob may have it now


@pytest.mark.django_db
def test_needs_fix_keeps_the_claim(alice):
    _sessions(2)
    client = _client(alice)
    client.post(NEXT)
    assert _opened(client.post(NEXT, {"after": "v00", "status": "needs_fix"})) == "v01"
    review = SessionReview.objects.get(pk="v00")
    assert (review.status, review.assignee) == (ReviewStatus.NEEDS_FIX, alice)


@pytest.mark.django_db
def test_a_session_a_person_assigned_is_not_taken_nor_given_back(alice, bob):
    _sessions(3)
    reviews.review_status_set(user=bob, session_id="v00", assignee=bob)
    reviews.review_status_set(user=bob, session_id="v01", assignee=alice)
    client = _client(alice)
    assert _opened(client.post(NEXT)) == "v01"  # assigned to her: opened, not claimed
    assert _opened(client.post(NEXT, {"after": "v01"})) == "v02"  # skipping keeps her assignment
    assert (_assignee("v00"), _assignee("v01")) == ("bob", "alice")


@pytest.mark.django_db
def test_the_end_page_restarts_with_a_post(alice):
    _sessions(1)
    client = _client(alice)
    client.post(NEXT)
    end = client.get(client.post(NEXT, {"after": "v00"})["Location"]).content.decode()
    assert 'id="queue-restart"' in end and f'action="{NEXT}"' in end and 'method="post"' in end


@pytest.mark.django_db
def test_the_start_page_runs_constant_queries(alice, bob):
    def count() -> int:
        client = _client(alice)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(QUEUE)
        assert response.status_code == 200
        return len(queries)

    _sessions(2, "a")
    small = count()
    ids = _sessions(30, "b")
    for sid in ids[:10]:
        reviews.review_status_set(user=bob, session_id=sid, assignee=bob)
    assert count() == small


@pytest.mark.django_db(transaction=True)
def test_concurrent_next_gives_different_sessions(django_user_model):
    """Each reviewer's browser presses "next" at the same moment (its own request, its own
    connection), three times in a row."""
    ids = _sessions(9, "c")
    users = [_reviewer(django_user_model, f"r{n}") for n in range(3)]
    clients = [_client(user) for user in users]
    barrier = threading.Barrier(len(users))
    got: list[list[str]] = [[] for _ in users]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            after = ""
            for _ in range(3):
                data = {"after": after, "status": "reviewed"} if after else {}
                after = _opened(clients[index].post(NEXT, data))
                got[index].append(after)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(users))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    opened = sorted(sid for mine in got for sid in mine)
    assert opened == ids
    for user, mine in zip(users, got, strict=True):
        assert all(_assignee(sid) == user.username for sid in mine)
    assert reverse("review_queue") == QUEUE and queue_url("c00").endswith("?queue=1")
