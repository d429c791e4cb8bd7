"""The interactive docs and the token page in a real Chromium, with nothing fetched from
anywhere but this server (Swagger UI is served from django-ninja's own static files) and
nothing tripping the Content-Security-Policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from conversations.models import ApiToken
from tests.browser.conftest import _sync_orm_beside_playwright, browser_type_launch_args
from tests.conftest import grant
from tests.support.auth import browser_login
from tests.support.builders import trip_session

__all__ = ["_sync_orm_beside_playwright", "browser_type_launch_args"]  # the browser fixtures

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots")
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI || 'inline'}`);
});
"""


@pytest.fixture
def viewer_page(live_server, page, django_user_model):
    trip_session("demo/trip")
    user = grant(django_user_model.objects.create_user("viewer"), "view_agentsession")
    elsewhere: list[str] = []

    def only_here(route):
        if route.request.url.startswith(live_server.url):
            return route.continue_()
        elsewhere.append(route.request.url)
        return route.abort()

    page.context.route("**/*", only_here)
    page.add_init_script(RECORD_VIOLATIONS)
    browser_login(page, live_server.url, user)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield page, live_server.url, user
    assert elsewhere == []  # no CDN, no request leaves this server


def test_the_docs_render_offline_and_try_it_out_works(viewer_page):
    page, base, _ = viewer_page
    response = page.goto(base + "/api/v1/docs")
    assert response is not None and response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector(".opblock", timeout=20_000)
    assert page.locator(".opblock").count() == 12  # every operation
    assert page.locator(".info .title").inner_text().startswith("Forkview API")
    page.screenshot(path=str(SHOTS / "api-docs.png"))
    # "Try it out" on the session list, with the browser's session cookie
    page.locator(".opblock-summary").first.click()
    page.locator("button.try-out__btn").first.click()
    page.locator("button.execute").first.click()
    status = page.locator(".live-responses-table .response .response-col_status").first
    status.wait_for(timeout=10_000)
    assert status.inner_text().strip().startswith("200")
    assert "demo/trip" in page.locator(".live-responses-table .microlight").first.inner_text()
    page.screenshot(path=str(SHOTS / "api-docs-try.png"))
    assert page.evaluate("window.__csp") == []


def test_the_token_page(viewer_page):
    page, base, user = viewer_page
    page.goto(base + "/")
    page.click("#api-tokens-link")
    page.wait_for_url("**/account/tokens/")
    page.fill("#token-name", "eval export")
    page.click("text=Create token")
    raw = page.input_value("#new-token")
    assert raw.startswith("fv_") and ApiToken.objects.get(user=user).prefix == raw[:10]
    page.screenshot(path=str(SHOTS / "api-token-created.png"), full_page=True)
    page.goto(base + "/account/tokens/")
    assert page.locator("#new-token").count() == 0  # shown once
    page.click("button:has-text('Revoke')")
    page.wait_for_selector("text=it no longer works")
    assert page.locator(".token-row .pill-warn").count() == 1
    assert ApiToken.objects.get(user=user).revoked_at is not None
    assert page.evaluate("window.__csp") == []
