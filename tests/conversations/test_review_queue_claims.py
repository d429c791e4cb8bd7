"""The queue claims what it opens (conversations.reviews.review_claim_next / review_release):
opening a session from the queue assigns it to the reviewer if nobody had it, atomically, so
two reviewers pressing "next" at once get two different sessions (real threads, real
connections, on both databases); an assignee a person set is never overwritten; a skip gives
back only a claim the queue made (the session was unassigned before); every claim and release
is in the audit trail."""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from conversations import reviews
from conversations.models import AuditEntry, ReviewStatus, SessionReview
from conversations.reviews import Target
from tests.conftest import grant
from tests.support.builders import Writer


def _sessions(count: int, prefix: str = "c") -> list[str]:
    ids = [f"{prefix}{n:02d}" for n in range(count)]
    for sid in ids:
        Writer(sid).turns(1)
    return ids


def _reviewer(django_user_model, name: str):
    user = django_user_model.objects.create_user(username=name)
    return grant(user, "view_agentsession", "annotate")


def _assignee(session_id: str) -> str | None:
    review = SessionReview.objects.select_related("assignee").filter(pk=session_id).first()
    return review.assignee.username if review and review.assignee else None


def _actions(session_id: str) -> list[tuple[str, str | None]]:
    rows = AuditEntry.objects.filter(session_id=session_id, kind="review").order_by("id")
    return [(e.action, e.actor.username if e.actor else None) for e in rows]


@pytest.fixture
def alice(db, django_user_model):
    return _reviewer(django_user_model, "alice")


@pytest.fixture
def bob(db, django_user_model):
    return _reviewer(django_user_model, "bob")


@pytest.mark.django_db
class TestClaims:
    def test_opening_claims_an_unassigned_session_and_audits_it(self, alice):
        _sessions(2)
        assert reviews.review_claim_next(user=alice) == "c00"
        assert _assignee("c00") == "alice"
        review = SessionReview.objects.get(pk="c00")
        assert review.status == ReviewStatus.UNREVIEWED and review.updated_by == alice
        entry = AuditEntry.objects.get(session_id="c00")
        assert (entry.action, entry.kind, entry.actor) == ("claimed", "review", alice)
        assert entry.before is None
        assert entry.after == {"status": "unreviewed", "assignee": "alice"}

    def test_two_reviewers_one_after_the_other_get_different_sessions(self, alice, bob):
        _sessions(3)
        assert reviews.review_claim_next(user=alice) == "c00"
        assert reviews.review_claim_next(user=bob) == "c01"
        # Opening the queue again gives each their own claim back (oldest first), no new entry.
        assert reviews.review_claim_next(user=alice) == "c00"
        assert reviews.review_claim_next(user=bob) == "c01"
        assert _actions("c00") == [("claimed", "alice")]
        # Next after one's own: the next unassigned one, not the other's.
        assert reviews.review_claim_next(user=alice, after="c00") == "c02"
        assert reviews.review_claim_next(user=bob, after="c01") is None

    def test_an_assignee_set_by_a_person_is_never_overwritten(self, alice, bob):
        _sessions(2)
        reviews.review_status_set(user=bob, session_id="c00", assignee=bob)
        assert reviews.review_claim_next(user=alice) == "c01"
        assert _assignee("c00") == "bob"
        assert reviews.review_claim_next(user=bob) == "c00"  # bob's own: opened as is
        assert _actions("c00") == [("created", "bob")]

    def test_reviewed_sessions_are_not_claimed(self, alice, bob):
        _sessions(2)
        reviews.review_status_set(user=bob, session_id="c00", status=ReviewStatus.REVIEWED)
        assert reviews.review_claim_next(user=alice) == "c01"
        assert _assignee("c00") is None

    def test_a_session_with_a_status_and_no_assignee_is_claimed_keeping_its_status(
        self, alice, bob
    ):
        _sessions(1)
        reviews.review_status_set(user=bob, session_id="c00", status=ReviewStatus.NEEDS_FIX)
        assert reviews.review_claim_next(user=alice) == "c00"
        review = SessionReview.objects.get(pk="c00")
        assert (review.status, review.assignee) == (ReviewStatus.NEEDS_FIX, alice)
        claimed = _actions("c00")[-1]
        assert claimed == ("claimed", "alice")

    def test_an_empty_queue_claims_nothing(self, alice):
        assert reviews.review_claim_next(user=alice) is None
        assert not SessionReview.objects.exists() and not AuditEntry.objects.exists()

    def test_review_next_still_only_reads(self, alice):
        _sessions(1)
        assert reviews.review_next(user=alice) == "c00"
        assert not SessionReview.objects.exists()


@pytest.mark.django_db
class TestRelease:
    def test_a_skip_gives_back_a_claim_of_an_unassigned_session(self, alice, bob):
        _sessions(1)
        reviews.review_claim_next(user=alice)
        assert reviews.review_release(user=alice, session_id="c00") is True
        # The claim made the review row; the release takes it away (a session without a row
        # is unreviewed and unassigned: the state the claim found).
        assert not SessionReview.objects.filter(pk="c00").exists()
        assert _actions("c00") == [("claimed", "alice"), ("released", "alice")]
        released = AuditEntry.objects.filter(action="released").get()
        assert released.before == {"status": "unreviewed", "assignee": "alice"}
        assert released.after is None
        assert reviews.review_claim_next(user=bob) == "c00"  # back in everyone's queue

    def test_a_release_keeps_a_status_the_session_had(self, alice, bob):
        _sessions(1)
        reviews.review_status_set(user=bob, session_id="c00", status=ReviewStatus.NEEDS_FIX)
        reviews.review_claim_next(user=alice)
        assert reviews.review_release(user=alice, session_id="c00") is True
        review = SessionReview.objects.get(pk="c00")
        assert (review.status, review.assignee) == (ReviewStatus.NEEDS_FIX, None)

    def test_a_release_after_annotating_keeps_the_in_review_status(self, alice):
        _sessions(1)
        reviews.review_claim_next(user=alice)
        reviews.comment_add(user=alice, target=Target("c00"), body="Half done.")
        reviews.review_status_set(user=alice, session_id="c00", status=ReviewStatus.IN_REVIEW)
        assert reviews.review_release(user=alice, session_id="c00") is True
        review = SessionReview.objects.get(pk="c00")
        assert (review.status, review.assignee) == (ReviewStatus.IN_REVIEW, None)

    def test_an_assignment_by_a_person_is_not_released(self, alice, bob):
        _sessions(2)
        reviews.review_status_set(user=bob, session_id="c00", assignee=alice)  # bob assigns alice
        assert reviews.review_claim_next(user=alice) == "c00"  # hers already: no claim
        assert reviews.review_release(user=alice, session_id="c00") is False
        assert _assignee("c00") == "alice"
        # A claim, then a person moves it to bob and back to alice: that person's choice. (A
        # person "assigning" it to its assignee changes nothing, and is no assignment here.)
        assert reviews.review_claim_next(user=alice, after="c00") == "c01"
        reviews.review_status_set(user=bob, session_id="c01", assignee=bob)
        reviews.review_status_set(user=bob, session_id="c01", assignee=alice)
        assert reviews.review_release(user=alice, session_id="c01") is False
        assert _assignee("c01") == "alice"

    def test_only_the_claimer_releases(self, alice, bob):
        _sessions(1)
        reviews.review_claim_next(user=alice)
        assert reviews.review_release(user=bob, session_id="c00") is False
        assert _assignee("c00") == "alice"

    def test_a_released_claim_is_not_released_twice(self, alice):
        _sessions(1)
        reviews.review_claim_next(user=alice)
        assert reviews.review_release(user=alice, session_id="c00") is True
        assert reviews.review_release(user=alice, session_id="c00") is False
        assert reviews.review_release(user=alice, session_id="no-such-session") is False


# ---- Real concurrency: threads, each with its own connection ---------------------------------


def _claim_at_once(users, rounds: int = 1) -> list[list[str | None]]:
    """Each user claims ``rounds`` times in a row (``after`` their last), all users started
    together; returns each user's sessions."""
    barrier = threading.Barrier(len(users))
    got: list[list[str | None]] = [[] for _ in users]
    errors: list[BaseException] = []

    def work(index: int, user) -> None:
        try:
            barrier.wait(timeout=30)
            after = None
            for _ in range(rounds):
                after = reviews.review_claim_next(user=user, after=after)
                got[index].append(after)
                if after is None:
                    break
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(i, u)) for i, u in enumerate(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    return got


@pytest.mark.django_db(transaction=True)
def test_concurrent_reviewers_get_different_sessions(django_user_model):
    ids = _sessions(12)
    users = [_reviewer(django_user_model, f"r{n}") for n in range(4)]
    got = _claim_at_once(users, rounds=3)
    opened = [sid for mine in got for sid in mine]
    assert None not in opened
    assert sorted(opened) == ids  # 4 reviewers x 3 "next": all 12, none twice
    for user, mine in zip(users, got, strict=True):
        for sid in mine:
            assert _assignee(sid) == user.username
            assert _actions(sid) == [("claimed", user.username)]


@pytest.mark.django_db(transaction=True)
def test_more_reviewers_than_sessions(django_user_model):
    ids = _sessions(2)
    users = [_reviewer(django_user_model, f"r{n}") for n in range(5)]
    got = _claim_at_once(users)
    opened = [mine[0] for mine in got]
    assert sorted(s for s in opened if s is not None) == ids
    assert opened.count(None) == 3
    assert AuditEntry.objects.filter(action="claimed").count() == 2
