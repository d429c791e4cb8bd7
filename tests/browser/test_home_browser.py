"""Smoke test in a real headless Chromium: the home page renders, logged in, without errors."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.support.auth import browser_login

SCREENSHOT = "/tmp/forkview-home.png"


@pytest.mark.browser
def test_home_page_renders_in_chromium(live_server, page):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # Anonymous: the page renders, or sends us to a login page; never a server error.
    response = page.goto(live_server.url + "/")
    assert response is not None and response.status < 500, response and response.status

    # Logged in (the pages are going behind a login): a superuser's session cookie.
    user = get_user_model().objects.create_superuser("smoke", "smoke@example.com", "smoke-pass-1")
    browser_login(page, live_server.url, user)
    response = page.goto(live_server.url + "/")
    assert response is not None and response.status == 200, response and response.status
    assert page.url.rstrip("/") == live_server.url.rstrip("/"), f"redirected to {page.url}"

    heading = page.locator("h1").first
    heading.wait_for(state="visible", timeout=10_000)
    assert heading.inner_text().strip()
    assert "Forkview" in page.title()
    body = page.content()
    assert "Server Error" not in body and "Traceback" not in body
    assert not errors, errors
    page.screenshot(path=SCREENSHOT, full_page=True)
