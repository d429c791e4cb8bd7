"""The Content-Security-Policy holds in a real Chromium (issue 13, item 2): every page is sent
with the policy, and no page (review, chat, admin, login, errors) trips it: no inline script,
style or handler anywhere, charts and live updates included."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote as urlquote

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from conversations.models import AgentMessage
from tests.support.auth import browser_login
from tests.support.builders import trip_session

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots")
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI || 'inline'} ${where}`);
});
"""


def test_no_page_trips_the_content_security_policy(live_server, page, django_user_model):
    trip_session("demo/trip")
    root = django_user_model.objects.create_superuser("root", "r@x.org", "pw")
    session = "/sessions/" + urlquote("demo/trip", safe="") + "/"
    message = AgentMessage.objects.filter(session_id="demo/trip").order_by("id").first()
    admin_session = reverse("admin:conversations_agentsession_change", args=[quote("demo/trip")])
    paths = [
        "/accounts/login/",  # anonymous first
        "/",
        "/?q=tokyo",
        session,
        session + "?branch=tokyo",
        session + "compare/?a=main&b=tokyo",
        session + "chat/",
        "/chat/new/",
        "/sessions/no-such-session/",  # the 404 page
        "/admin/",
        "/admin/conversations/agentsession/",
        admin_session,
        reverse("admin:conversations_agentmessage_change", args=[message.pk]),
        reverse("admin:conversations_agentmessage_history", args=[message.pk]),
        reverse("admin:conversations_usage_health") + "?session=" + urlquote("demo/trip"),
        "/admin/conversations/turnusage/",
    ]
    page.add_init_script(RECORD_VIOLATIONS)
    console: list[str] = []
    page.on(
        "console",
        lambda msg: console.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    for n, path in enumerate(paths):
        if n == 1:
            browser_login(page, live_server.url, root)
        response = page.goto(live_server.url + path)
        assert response is not None and response.status in (200, 404), (path, response.status)
        policy = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy, path
        page.wait_for_load_state("networkidle")
        violations = page.evaluate("window.__csp")
        if violations or console:
            source = response.text().splitlines()
            lines = {int(v.rsplit(":", 1)[1]) for v in violations if v.rsplit(":", 1)[1].isdigit()}
            context = [source[n - 1][:200] for n in sorted(lines) if 0 < n <= len(source)]
            pytest.fail(f"{path}: {violations} {console} at {context}")
        if path == session:
            assert page.locator("canvas").count() >= 1  # the charts drew under the policy
        name = {session: "session", session + "chat/": "chat", paths[12]: "admin-message"}
        if path in name:
            page.screenshot(path=str(SHOTS / f"csp-{name[path]}.png"), full_page=True)
