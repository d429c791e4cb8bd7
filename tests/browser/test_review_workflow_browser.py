"""The review workflow in headless Chromium: scoring and commenting with the keyboard on the
session page (no reload), what a viewer sees, and working through the queue without the mouse.
Screenshots land in /tmp/shots/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conversations import reviews
from conversations.models import Annotation, ReviewStatus, ScoreDefinition, SessionReview
from conversations.reviews import Target
from dashboard.links import compare_url, session_url
from tests.conftest import grant
from tests.support.auth import browser_login
from tests.support.builders import Writer, trip_session

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots")
TRIP = "demo/trip"


def _shot(page, name: str, *, full: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full)


@pytest.fixture
def definitions(db):
    ScoreDefinition.objects.create(name="helpful", kind="boolean", position=0)
    ScoreDefinition.objects.create(
        name="quality", kind="numeric", min_value=1, max_value=5, position=1
    )
    ScoreDefinition.objects.create(
        name="failure", kind="categorical", labels=["wrong-tool", "off-topic"], position=2
    )


@pytest.fixture
def annotator(db, django_user_model):
    user = django_user_model.objects.create_user(username="ann", password="ann-pass-1")
    return grant(user, "view_agentsession", "annotate")


def _text(page, selector: str) -> str:
    """The text of an element, whitespace folded (chips are flex boxes)."""
    return " ".join(page.inner_text(selector).split())


def _queue_ready(page) -> None:
    """annotate.js has run: in the queue it focuses the first turn."""
    page.wait_for_function(
        "document.activeElement && document.activeElement.matches('article.turn')"
    )


def _wait_for_rows(count: int, **filters) -> None:
    """The page said "saved" (the DOM changed); the rows are there too."""
    assert Annotation.objects.filter(**filters).count() == count


def test_score_comment_and_tag_a_turn_with_the_keyboard(live_server, page, annotator, definitions):
    trip_session(TRIP)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    browser_login(page, live_server.url, annotator)
    page.goto(live_server.url + session_url(TRIP, "main"))
    page.wait_for_selector("#turn-1 [data-note-bar] .thumb-up")
    assert page.inner_text("#review-status") == "unreviewed"

    page.keyboard.press("j")  # focus turn 1 (forkview.js)
    assert page.evaluate("document.activeElement.id") == "turn-1"
    page.keyboard.press("1")  # thumbs up
    page.wait_for_selector("#turn-1 .thumb-up[aria-pressed=true]")
    _wait_for_rows(1, kind="score", branch_id="main", turn=1, value=1.0, author=annotator)
    assert page.evaluate("document.activeElement.id") == "turn-1"  # focus kept

    page.keyboard.press("3")  # quality: a prompt for the value
    page.wait_for_selector("#turn-1 .note-editor input[type=number]")
    page.keyboard.type("4")
    page.keyboard.press("Enter")
    page.wait_for_selector("#turn-1 .score-chip.mine[data-definition=quality]")
    assert _text(page, "#turn-1 [data-definition=quality] .chip-value") == "4"

    page.keyboard.press("c")  # comment: keys typed in the box do not score or tag
    page.wait_for_selector("#turn-1 .note-editor textarea")
    page.keyboard.type("Good *answer* 1 2 c t <b>x</b>")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#turn-1 .note-comment")
    assert page.inner_html("#turn-1 .note-comment .note-body").count("<em>answer</em>") == 1
    assert "<b>x</b>" in page.inner_text("#turn-1 .note-comment .note-body")  # text, not markup
    _wait_for_rows(2, kind="score", author=annotator)  # "1" and "2" in the box did nothing

    page.keyboard.press("t")
    page.wait_for_selector("#turn-1 .note-editor input.note-tag")
    page.keyboard.type("weather")
    page.keyboard.press("Enter")
    page.wait_for_selector("#turn-1 .tag-chip")
    assert "#weather" in page.inner_text("#turn-1 .tag-chip")

    page.keyboard.press("j")
    page.keyboard.press("2")  # thumbs down on turn 2
    page.wait_for_selector("#turn-2 .thumb-down[aria-pressed=true]")
    page.keyboard.press("k")
    page.keyboard.press("1")  # pressing the active thumb again clears it
    page.wait_for_selector("#turn-1 .thumb-up[aria-pressed=false]")
    page.keyboard.press("1")
    page.wait_for_selector("#turn-1 .thumb-up[aria-pressed=true]")

    # The branch tree, the branch list and the header followed without a reload.
    tree = _text(page, "#branch-tree .tree-node[data-branch=main] .branch-scores")
    assert "helpful 50% up" in tree and "quality 4" in tree
    assert "helpful 50% up" in _text(page, "#branch-list [data-branch-scores=main]")
    assert page.inner_text("#review-status") == "in review"
    assert "1 comment" in _text(page, "#session-counts")
    _shot(page, "review-turn-scoring")

    # The whole session: "s" targets it.
    page.keyboard.press("s")
    page.keyboard.press("c")
    page.keyboard.type("Overall fine.")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#session-target .note-comment")
    assert Annotation.objects.filter(kind="comment", branch_id="").count() == 1

    page.keyboard.press("?")
    page.wait_for_selector("#keys-help[open]")
    assert "quality" in page.inner_text("#keys-help")
    _shot(page, "review-keys-help")
    page.keyboard.press("Escape")
    page.wait_for_selector("#keys-help:not([open])", state="attached")

    # The status control in the header.
    page.select_option("#review-status-select", "needs_fix")
    page.click("#review-save")
    page.wait_for_selector("#review-status.status-needs_fix")
    assert SessionReview.objects.get(pk=TRIP).status == ReviewStatus.NEEDS_FIX

    # The page after a reload shows the same.
    page.reload()
    page.wait_for_selector("#turn-1 .tag-chip")
    page.locator("#branch-tree").screenshot(path=str(SHOTS / "review-branch-averages.png"))
    assert errors == []


def test_viewer_sees_annotations_without_controls(
    live_server, page, django_user_model, definitions
):
    trip_session(TRIP)
    author = grant(
        django_user_model.objects.create_user(username="author"), "view_agentsession", "annotate"
    )
    reviews.score_set(user=author, target=Target(TRIP, "main", 1), definition="helpful", value=1)
    reviews.comment_add(user=author, target=Target(TRIP, "main", 1), body="**noted**")
    viewer = grant(django_user_model.objects.create_user(username="viewer"), "view_agentsession")
    browser_login(page, live_server.url, viewer)
    page.goto(live_server.url + session_url(TRIP, "main"))
    page.wait_for_selector("#turn-1 .note-comment")
    assert page.locator("[data-action]").count() == 0
    assert page.locator("#review-form, #queue-bar").count() == 0
    page.keyboard.press("j")
    page.keyboard.press("1")
    page.keyboard.press("c")
    assert page.locator(".note-editor:not([hidden])").count() == 0
    assert Annotation.objects.count() == 2


def test_compare_shows_which_branch_scored_better(live_server, page, annotator, definitions):
    trip_session(TRIP)
    for turn, value in ((3, 2), (4, 3)):
        reviews.score_set(
            user=annotator, target=Target(TRIP, "main", turn), definition="quality", value=value
        )
    for turn in (3, 4):
        reviews.score_set(
            user=annotator, target=Target(TRIP, "tokyo", turn), definition="quality", value=5
        )
        reviews.score_set(
            user=annotator, target=Target(TRIP, "tokyo", turn), definition="helpful", value=1
        )
    browser_login(page, live_server.url, annotator)
    page.goto(live_server.url + compare_url(TRIP, "main", "tokyo"))
    verdict = page.locator("#compare-verdict")
    assert verdict.get_attribute("data-better") == "b"
    assert "tokyo (right) scored better" in " ".join(verdict.inner_text().split())
    assert page.locator("#score-compare tr[data-definition=quality] td.better").count() == 1
    _shot(page, "review-compare")


def test_work_through_the_queue_with_the_keyboard(live_server, page, annotator, definitions):
    for n in range(3):
        Writer(f"queue/{n}").turns(2)
    browser_login(page, live_server.url, annotator)
    page.goto(live_server.url + "/review/")
    page.wait_for_url(re.compile(r"/sessions/queue/0/\?queue=1"))
    page.wait_for_selector("#queue-bar.in-queue")
    _queue_ready(page)
    _shot(page, "review-queue-session")
    page.keyboard.press("1")  # the first turn has the focus in the queue
    page.wait_for_selector("article.turn .thumb-up[aria-pressed=true]")
    page.keyboard.press("r")  # reviewed, next
    page.wait_for_url(re.compile(r"/sessions/queue/1/\?queue=1"))
    _queue_ready(page)
    assert SessionReview.objects.get(pk="queue/0").status == ReviewStatus.REVIEWED
    page.keyboard.press("n")  # skip
    page.wait_for_url(re.compile(r"/sessions/queue/2/\?queue=1"))
    _queue_ready(page)
    assert not SessionReview.objects.filter(pk="queue/1").exists()
    page.keyboard.press("f")  # needs fix, next: the end
    page.wait_for_url(re.compile(r"/review/\?end=1"))
    assert SessionReview.objects.get(pk="queue/2").status == ReviewStatus.NEEDS_FIX
    assert "End of the queue" in page.inner_text("#queue-empty")
    _shot(page, "review-queue-end")
    page.keyboard.press("Enter")  # "start again" has the focus: the skipped one, then needs fix
    page.wait_for_url(re.compile(r"/sessions/queue/1/\?queue=1"))
    _queue_ready(page)
    page.keyboard.press("r")
    page.wait_for_url(re.compile(r"/sessions/queue/2/\?queue=1"))
    _queue_ready(page)
    page.keyboard.press("r")
    page.wait_for_url(re.compile(r"/review/\?end=1"))
    assert "Nothing left to review" in page.inner_text("#queue-empty")
    _shot(page, "review-queue-empty")
    assert set(SessionReview.objects.values_list("status", flat=True)) == {"reviewed"}


def test_turns_loaded_later_get_their_bars(live_server, page, annotator, definitions):
    Writer("long").turns(30)  # the page opens on the last 25 turns
    reviews.tag_add(user=annotator, target=Target("long", "main", 2), tag="early-turn")
    browser_login(page, live_server.url, annotator)
    page.goto(live_server.url + session_url("long", "main"))
    assert page.locator("#turn-2").count() == 0
    page.click("#load-earlier")
    page.wait_for_selector("#turn-2 [data-note-bar] .tag-chip")
    assert "#early-turn" in page.inner_text("#turn-2 .tag-chip")
    assert page.locator("article.turn:not(:has([data-note-bar]))").count() == 0
    page.locator("#turn-3").focus()
    page.keyboard.press("1")  # the loaded turns take keys like the others
    page.wait_for_selector("#turn-3 .thumb-up[aria-pressed=true]")
    assert Annotation.objects.filter(kind="score", turn=3).count() == 1


# ---- The session list filtered by score (another part of issue 15; its test goes here) ----
