"""The admin in headless Chromium, as a staff user: the read-only session page, a branch
rename through its link (an id with a slash), and a message edit refused for bad JSON."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from conversations.models import AgentMessage, MessageStructure
from tests.support.auth import browser_login
from tests.support.builders import trip_session

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots")


def test_staff_walk_session_page_branch_rename_and_bad_json(live_server, page, django_user_model):
    trip_session("demo/trip")
    root = django_user_model.objects.create_superuser("root", "r@x.org", "pw")
    browser_login(page, live_server.url, root)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    url = reverse("admin:conversations_agentsession_change", args=[quote("demo/trip")])
    page.goto(live_server.url + url)
    assert page.locator("h1").inner_text() == "View agent session"
    assert page.locator("input[name=_save]").count() == 0  # nothing to save here
    messages = page.locator("#messages-group").inner_text()
    assert "output_text" not in messages and "message 1 of" not in messages
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "admin-session.png"), full_page=True)

    page.click("table.forkview-branches a[href$='branch=tokyo%2Fnikko']:text('rename')")
    page.fill("#id_new", "nikko day-trip")
    page.click("input[type=submit]")
    page.wait_for_selector(".messagelist")
    assert "Renamed branch 'tokyo/nikko' to 'nikko day-trip'" in page.inner_text(".messagelist")
    assert MessageStructure.objects.filter(session_id="demo/trip", branch_id="nikko day-trip")

    first = AgentMessage.objects.filter(session_id="demo/trip").order_by("id").first()
    page.goto(live_server.url + reverse("admin:conversations_agentmessage_change", args=[first.pk]))
    page.fill("#id_message_data", '{"role": "user",, "content": "x"}')
    page.click("input[name=_save]")
    assert "Not valid JSON" in page.locator(".errorlist").inner_text()
    assert "line 1, column 17" in page.locator(".errorlist").inner_text()
    page.screenshot(path=str(SHOTS / "admin-bad-json.png"), full_page=True)
    assert not errors, errors
