"""The session list's review filters in headless Chromium: filter by a score range, by
review status, read the columns, and download the filtered list as a dataset.
Screenshots land in /tmp/shots/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conversations import reviews
from conversations.exchange import finetune_problems
from conversations.models import ScoreDefinition
from tests.conftest import grant
from tests.support.auth import browser_login
from tests.support.builders import Writer, turn_items

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots")


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def scored(db, reviewer):
    """Five sessions; quality 1..5 by the reviewer (who may annotate), thumbs on some."""
    grant(reviewer, "annotate")
    quality = ScoreDefinition.objects.create(
        name="quality", kind="numeric", min_value=1, max_value=5, position=2
    )
    helpful = ScoreDefinition.objects.create(name="helpful", kind="boolean", position=1)
    for n in range(1, 6):
        sid = f"demo/scored-{n}"
        w = Writer(sid)
        w.turn(turn_items(1, text=f"question number {n}"))
        w.turn(turn_items(2, tool=True))
        target = reviews.Target(sid, "main", 1)
        reviews.score_set(user=reviewer, target=target, definition=quality, value=n)
        reviews.score_set(user=reviewer, target=target, definition=helpful, value=n % 2)
    reviews.review_status_set(user=reviewer, session_id="demo/scored-5", status="reviewed")
    reviews.review_status_set(user=reviewer, session_id="demo/scored-4", status="needs_fix")


def test_filter_the_list_by_score_and_export(live_server, page, reviewer, scored, tmp_path):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    browser_login(page, live_server.url, reviewer)
    page.goto(live_server.url + "/")
    page.wait_for_selector("#session-table")
    assert page.locator("tr.session-row").count() == 5
    # The score column shows the first thumbs score by default, as the share of thumbs up.
    assert page.locator("#session-table thead").inner_text().lower().count("helpful") == 1
    _shot(page, "list-review-columns")

    page.select_option("#score", "quality")
    page.fill("#score_min", "3")
    page.fill("#score_max", "4.5")
    page.click("#session-filters button[type=submit]")
    page.wait_for_url("**score=quality**")
    rows = page.locator("tr.session-row")
    assert sorted(rows.nth(i).get_attribute("data-session") for i in range(rows.count())) == [
        "demo/scored-3",
        "demo/scored-4",
    ]
    assert "2 conversations" in page.inner_text(".page-head")
    assert page.locator("#session-table thead").inner_text().lower().count("quality") == 1
    row4 = page.locator('tr.session-row[data-session="demo/scored-4"]')
    assert "4.0" in row4.inner_text() and "needs fix" in row4.inner_text()
    # The form keeps what was chosen.
    assert page.input_value("#score") == "quality" and page.input_value("#score_min") == "3"
    assert page.input_value("#score_max") == "4.5"
    _shot(page, "list-filtered-by-score")

    page.select_option("#status", "unreviewed")
    page.click("#session-filters button[type=submit]")
    page.wait_for_url("**status=unreviewed**")
    assert [
        page.locator("tr.session-row").nth(i).get_attribute("data-session")
        for i in range(page.locator("tr.session-row").count())
    ] == ["demo/scored-3"]

    # "Export dataset" downloads exactly the listed sessions.
    page.click("summary:has-text('Export dataset')")
    _shot(page, "list-export-dataset")
    with page.expect_download() as download_info:
        page.click(".dataset-form button[type=submit]")
    target = tmp_path / "dataset.jsonl"
    download_info.value.save_as(target)
    lines = target.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and all(finetune_problems(line) == [] for line in lines)
    assert json.loads(lines[0])["messages"][0]["content"] == "question number 3"
    assert not errors, errors
