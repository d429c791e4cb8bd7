"""Moderation in headless Chromium: a moderator sees "Delete (moderate)" on someone else's
comment (and × on their tag), gives a reason in the prompt, and the comment goes without a
reload; the audit trail names the moderator and keeps the reason. An annotator sees no such
control. Screenshots land in /tmp/shots/ (or $FORKVIEW_SHOTS)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conversations import permissions, reviews
from conversations.models import Annotation, AuditEntry, ScoreDefinition
from conversations.reviews import Target
from dashboard.links import session_url
from tests.conftest import grant
from tests.support.auth import browser_login
from tests.support.builders import trip_session

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(os.environ.get("FORKVIEW_SHOTS", "/tmp/shots"))
TRIP = "demo/trip"


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


@pytest.fixture
def people(db, django_user_model):
    ScoreDefinition.objects.create(name="helpful", kind="boolean", position=0)
    author = grant(
        django_user_model.objects.create_user(username="dana", password="dana-pass-1"),
        "view_agentsession",
        "annotate",
    )
    moderator = grant(
        django_user_model.objects.create_user(username="mo", password="mo-pass-1"),
        "view_agentsession",
        "annotate",
        permissions.MODERATE_CODENAME,
    )
    return author, moderator


def test_a_moderator_deletes_someone_elses_comment(live_server, page, people):
    author, moderator = people
    trip_session(TRIP)
    target = Target(TRIP, "main", 1)
    spam = reviews.comment_add(user=author, target=target, body="Cheap flights at **example**")
    tag = reviews.tag_add(user=author, target=target, tag="off-topic")
    reviews.comment_add(user=moderator, target=target, body="Checked the dates: fine.")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    browser_login(page, live_server.url, moderator)
    page.goto(live_server.url + session_url(TRIP, "main") + "#turn-1")
    control = page.locator(f'li.note-comment[data-note-id="{spam.pk}"] [data-action=moderate]')
    control.wait_for()
    assert control.inner_text() == "Delete (moderate)"
    assert page.locator(f'.tag-chip[data-note-id="{tag.pk}"] [data-action=moderate]').count() == 1
    own = page.locator("li.note-comment", has_text="Checked the dates")
    assert own.locator("[data-action=moderate]").count() == 0
    assert own.locator("[data-action=edit]").count() == 1
    page.locator("#turn-1").scroll_into_view_if_needed()
    _shot(page, "moderation-control")

    prompts: list[str] = []

    def answer(dialog) -> None:
        prompts.append(dialog.message)
        dialog.accept("advertising")

    page.once("dialog", answer)
    control.click()
    page.locator(f'li.note-comment[data-note-id="{spam.pk}"]').wait_for(state="detached")
    assert "dana's comment" in prompts[0]
    assert not Annotation.objects.filter(pk=spam.pk).exists()
    entry = AuditEntry.objects.get(object_id=spam.pk, action="moderated")
    assert entry.actor == moderator and entry.before["author"] == "dana"
    assert entry.after == {"reason": "advertising"}
    assert "Checked the dates" in page.inner_text("#turn-1")  # the rest of the bar stays
    _shot(page, "moderation-after")

    # Cancelling the prompt deletes nothing.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.locator(f'.tag-chip[data-note-id="{tag.pk}"] [data-action=moderate]').click()
    page.wait_for_timeout(300)
    assert Annotation.objects.filter(pk=tag.pk).exists()
    assert errors == []


def test_an_annotator_sees_no_moderation_control(live_server, page, people):
    author, _moderator = people
    trip_session(TRIP)
    reviews.comment_add(user=author, target=Target(TRIP, "main", 1), body="Looks right.")
    other = grant(
        type(author).objects.create_user(username="ann", password="ann-pass-1"),
        "view_agentsession",
        "annotate",
    )
    browser_login(page, live_server.url, other)
    page.goto(live_server.url + session_url(TRIP, "main"))
    page.locator("li.note-comment", has_text="Looks right.").wait_for()
    assert page.locator("[data-action=moderate]").count() == 0
