"""The review UI in headless Chromium: login, list, search, branch switching, charts,
compare, keyboard navigation and hostile content. Screenshots land in /tmp/shots/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dashboard.links import compare_url, session_url
from tests.conftest import grant
from tests.support.auth import browser_login
from tests.support.builders import Writer, trip_session
from tests.support.hostile import hostile_turns

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots")


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def trip(db):
    trip_session("demo/trip")


def test_login_list_search_and_open_hit(live_server, page, reviewer, trip):
    page.goto(live_server.url + "/")
    assert "/accounts/login/" in page.url
    _shot(page, "login")
    page.fill("#id_username", "reviewer")
    page.fill("#id_password", "review-pass-1")
    page.click("#login-submit")
    page.wait_for_selector("#session-table")
    assert page.locator("tr.session-row").count() == 1
    _shot(page, "list")
    page.fill("#q", "nikko")
    page.press("#q", "Enter")
    page.wait_for_selector("#search-results .hit")
    assert "only in" in page.inner_text("#search-results .hit")
    _shot(page, "search")
    page.click("#search-results .hit-link")
    page.wait_for_selector("#turn-4")
    assert page.get_attribute("#session-page", "data-branch") == "tokyo/nikko"
    assert page.url.endswith("#turn-4")


def test_branch_switcher_moves_between_siblings(live_server, page, reviewer, trip):
    browser_login(page, live_server.url, reviewer)
    page.goto(live_server.url + session_url("demo/trip"))
    switcher = page.locator("#turn-3 .branch-switcher")
    assert switcher.locator(".switch-pos").inner_text() == "1/2"
    switcher.locator("a.switch-next").click()
    page.wait_for_url(re.compile(r"branch=tokyo&turn=3"))
    assert page.get_attribute("#session-page", "data-branch") == "tokyo"
    assert page.locator("#turn-3 .switch-pos").inner_text() == "2/2"
    assert "tokyo weather?" in page.inner_text("#turn-3 .turn-user")
    _shot(page, "switched-branch")


def test_charts_draw_usage_json(live_server, page, reviewer, trip):
    browser_login(page, live_server.url, reviewer)
    page.goto(live_server.url + session_url("demo/trip", "tokyo"))
    page.wait_for_selector("#token-charts[data-ready=true]")
    per_turn = page.evaluate("() => window.forkviewCharts.perTurn.data.datasets.map(d => d.data)")
    assert per_turn[0] == [100, 200, 1000, 1100]  # input tokens: main's rows, then tokyo's
    lines = page.evaluate("() => window.forkviewCharts.cumulative.data.datasets.map(d => d.label)")
    assert set(lines) == {"main", "tokyo", "tokyo/nikko", "bigger budget"}
    painted = page.evaluate(
        """() => { const c = document.getElementById('chart-per-turn');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   let n = 0;
                   for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
                   return n; }"""
    )
    assert painted > 500
    tools = page.evaluate(
        "() => window.forkviewCharts.tools.data.datasets.map(d => [d.label, d.data])"
    )
    assert tools == [["calculator", [1, 0, 1, 0]]]
    assert page.inner_text("#chart-tools-summary") == "calculator × 2"
    page.locator("#token-charts").screenshot(path=str(SHOTS / "charts.png"))


def test_compare_view_highlights_differences(live_server, page, reviewer, trip):
    browser_login(page, live_server.url, reviewer)
    page.goto(live_server.url + compare_url("demo/trip", "main", "tokyo"))
    page.wait_for_selector("#compare-table")
    assert "turn 3" in page.inner_text("#compare-summary")
    assert page.locator("#compare-table del").count() > 0
    assert page.locator("#compare-table ins").count() > 0
    _shot(page, "compare")


def test_keyboard_navigation(live_server, page, reviewer, trip):
    browser_login(page, live_server.url, reviewer)
    page.goto(live_server.url + session_url("demo/trip"))
    page.wait_for_selector("#turn-1")
    page.keyboard.press("j")
    first = page.evaluate("() => document.activeElement.dataset.turn")
    page.keyboard.press("j")
    page.keyboard.press("j")
    assert page.evaluate("() => document.activeElement.dataset.turn") == str(int(first) + 2)
    page.keyboard.press("k")
    assert page.evaluate("() => document.activeElement.dataset.turn") == str(int(first) + 1)
    # Focus turn 3 (a fork point) and jump to the next sibling branch with "]".
    page.evaluate("() => document.getElementById('turn-3').focus()")
    page.keyboard.press("]")
    page.wait_for_url(re.compile(r"branch=tokyo"))
    page.wait_for_selector("#turn-3")
    page.evaluate("() => document.getElementById('turn-3').focus()")
    page.keyboard.press("[")
    page.wait_for_url(re.compile(r"/sessions/demo/trip/\?branch=main&turn=3"))


def test_load_earlier_prepends_turns(live_server, page, reviewer):
    Writer("long").bulk(60)
    browser_login(page, live_server.url, reviewer)
    page.goto(live_server.url + session_url("long"))
    assert page.locator("article.turn").count() == 25
    url = page.url
    page.click("#load-earlier")
    page.wait_for_selector("#turn-11")
    assert page.url == url and page.locator("article.turn").count() == 50


def test_hostile_content_runs_no_script(live_server, page, reviewer):
    w = Writer("<script>alert('sid')</script> ☕/x")
    for items in hostile_turns():
        w.turn(items, (10, 5))
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    browser_login(page, live_server.url, reviewer)
    page.goto(live_server.url + session_url("<script>alert('sid')</script> ☕/x", turn=1))
    page.wait_for_selector("#turn-1")
    page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
    for link in page.locator(".markdown a").all():
        assert not (link.get_attribute("href") or "").lower().startswith("javascript")
    page.mouse.move(200, 300)
    page.wait_for_timeout(300)
    page.goto(live_server.url + "/?q=script")
    page.wait_for_selector("#search-results")
    assert dialogs == []
    assert page.evaluate("() => window.__pwned") is None
    _shot(page, "hostile-search")


def test_mobile_and_dark_layouts(live_server, browser, reviewer, trip):
    for name, options in {
        "mobile-detail": {"viewport": {"width": 390, "height": 844}, "is_mobile": True},
        "dark-detail": {"viewport": {"width": 1280, "height": 900}, "color_scheme": "dark"},
    }.items():
        context = browser.new_context(**options)
        page = context.new_page()
        browser_login(page, live_server.url, reviewer)
        page.goto(live_server.url + session_url("demo/trip", "tokyo/nikko"))
        page.wait_for_selector("#token-charts[data-ready=true]")
        # Nothing overflows the viewport horizontally.
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)
        context.close()


def test_mark_a_preferred_branch(live_server, page, reviewer, trip):
    grant(reviewer, "mark_preferred_branch")
    browser_login(page, live_server.url, reviewer)
    page.goto(live_server.url + session_url("demo/trip", "tokyo/nikko"))
    page.click("#prefer-button")
    page.wait_for_selector("#preferred-badge")
    assert page.inner_text("#prefer-button") == "Unmark preferred"
    # The session list's link now opens the marked branch; the tree stars it.
    page.goto(live_server.url + "/")
    page.click("tr.session-row a[href='/sessions/demo/trip/']")
    page.wait_for_selector("#preferred-badge")
    assert page.get_attribute("#session-page", "data-branch") == "tokyo/nikko"
    star = page.locator("#branch-tree .tree-node[data-branch='tokyo/nikko'] .preferred-star")
    assert star.is_visible()
    _shot(page, "preferred-branch")
    # main is one click away, and unmarking brings the default back.
    page.click("#branch-tree .tree-node[data-branch='main'] a")
    page.wait_for_selector("#prefer-button")
    assert page.get_attribute("#session-page", "data-branch") == "main"
    page.goto(live_server.url + session_url("demo/trip"))
    page.click("#prefer-button")
    page.wait_for_selector("#prefer-button:has-text('Mark as preferred')")
    page.goto(live_server.url + session_url("demo/trip"))
    assert page.get_attribute("#session-page", "data-branch") == "main"
