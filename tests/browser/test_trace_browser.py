"""Traces on the session page in headless Chromium (issue 16): the seeded demo session's
per-turn line, its span waterfall (bars on a time axis, the failed tool call in red), the cost
in the branch tree and the cost chart. Screenshots land in /tmp/shots/."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connections

from conversations.models import AgentTrace
from dashboard.demo.seed import FAILING_TOOL, HANDOFF, seed_sessions
from dashboard.links import session_url
from tests.conftest import grant
from tests.support.auth import browser_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots")
SUPPORT, BRANCH, FAILING_TURN = FAILING_TOOL


def _seed() -> None:
    try:
        seed_sessions()  # real Runner runs (asyncio.run): off Playwright's loop
    finally:
        connections.close_all()


@pytest.fixture
def seeded(db):
    with ThreadPoolExecutor(1) as pool:
        pool.submit(_seed).result()
    assert AgentTrace.objects.filter(session_id=SUPPORT).exists()


@pytest.fixture
def viewer(db, django_user_model):
    user = django_user_model.objects.create_user(username="viewer", password="viewer-pass-1")
    return grant(user, "view_agentsession")


def test_waterfall_of_a_seeded_turn_shows_bars_and_the_failed_tool(
    live_server, page, viewer, seeded
):
    browser_login(page, live_server.url, viewer)
    page.set_viewport_size({"width": 1400, "height": 1100})
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.goto(live_server.url + session_url(SUPPORT, BRANCH))
    turn = page.locator(f"#turn-{FAILING_TURN}")
    line = turn.locator("details.turn-trace > summary")
    text = " ".join(line.inner_text().split())
    assert "gpt-4o" in text and "1 error" in text and "tool calls" in text and "$" in text
    assert turn.locator(".cost-badge").first.inner_text().startswith("$")  # beside the tokens
    # Collapsed until asked: no spans fetched yet.
    assert turn.locator(".wf-row").count() == 0
    line.click()
    page.wait_for_selector(f"#turn-{FAILING_TURN} .wf-row")
    rows = turn.locator(".wf-row")
    assert rows.count() >= 5  # agent, model calls, the failed call and its retry, the answer
    kinds = [rows.nth(i).get_attribute("data-kind") for i in range(rows.count())]
    assert kinds[0] == "agent" and "function" in kinds and "response" in kinds
    # Bars sit on one time axis: the root spans the turn, later spans start further right.
    lefts = turn.locator(".wf-bar").evaluate_all(
        "bars => bars.map(b => [parseFloat(b.style.left), parseFloat(b.style.width)])"
    )
    assert lefts[0][0] == 0 and lefts[0][1] > 99  # the trace ends a few ms after its agent
    starts = [left for left, _ in lefts[1:]]
    assert starts == sorted(starts) and starts[-1] > 50
    assert all(0 < width <= 100 for _, width in lefts)
    # The failed tool call: its row red, its error spelled out.
    failed = turn.locator(".wf-row.wf-error")
    assert failed.count() == 1
    assert "calculator" in failed.inner_text() and "TimeoutError" in failed.inner_text()
    colour = failed.locator(".wf-bar").evaluate("b => getComputedStyle(b).backgroundColor")
    ok = turn.locator(".wf-row:not(.wf-error)[data-kind=function] .wf-bar").first
    assert colour != ok.evaluate("b => getComputedStyle(b).backgroundColor")
    red, green, blue = (int(c) for c in colour[colour.index("(") + 1 : -1].split(",")[:3])
    assert red > 150 and green < 100 and blue < 100
    SHOTS.mkdir(parents=True, exist_ok=True)
    turn.screenshot(path=str(SHOTS / "trace-waterfall.png"))
    # Closing and reopening does not fetch or draw twice.
    line.click()
    line.click()
    assert turn.locator(".wf-row").count() == rows.count()
    # The handoff turn: two agents and the handoff between them.
    handoff_turn = page.locator(f"#turn-{HANDOFF[2]}")
    handoff_turn.locator("details.turn-trace > summary").click()
    page.wait_for_selector(f"#turn-{HANDOFF[2]} .wf-row[data-kind=handoff]")
    # The branch tree shows each branch's cost; the cost chart is drawn.
    tree = page.locator("#branch-tree")
    assert tree.locator(".node-cost").count() == 2
    page.wait_for_selector("#token-charts[data-ready=true]")
    assert page.evaluate("window.forkviewCharts.cost !== null")
    tree.screenshot(path=str(SHOTS / "trace-branch-tree.png"))
    page.locator("#cost-chart-figure").screenshot(path=str(SHOTS / "trace-cost-chart.png"))
    # (The live updates' socket has no server here: the test server is WSGI.)
    assert [e for e in errors if "WebSocket" not in e] == []


def test_a_turn_without_a_trace_says_so(live_server, page, viewer, seeded):
    browser_login(page, live_server.url, viewer)
    page.goto(live_server.url + session_url("demo/math-homework", "main"))
    assert page.locator("#turn-2 .trace-none").inner_text() == "no trace"
    assert page.locator("#turn-1 details.turn-trace").count() == 1


def test_the_session_list_sorts_and_filters_by_cost(live_server, page, viewer, seeded):
    """The Cost column: a click on its header sorts by it (most expensive first), the cost
    range narrows the list, and the figures are the summaries' (dollars)."""
    from conversations.models import SessionSummary

    browser_login(page, live_server.url, viewer)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(live_server.url + "/")
    page.get_by_role("link", name="Cost").click()  # descending first, as every column
    page.wait_for_url("**sort=-cost**")
    rows = page.locator("tr.session-row")
    shown = [rows.nth(i).get_attribute("data-session") for i in range(rows.count())]
    expected = list(
        SessionSummary.objects.order_by("-cost_nanos", "-session_id").values_list(
            "session_id", flat=True
        )
    )
    assert shown == expected and len(shown) >= 5
    cells = [c.strip() for c in page.locator("td.cost-cell").all_inner_texts()]
    assert all(c.startswith("$") for c in cells), cells
    page.fill("#cost_min", "0.01")
    page.locator("#session-filters button[type=submit]").click()
    page.wait_for_url("**cost_min=0.01**")
    cheap = SessionSummary.objects.filter(cost_nanos__gte=10_000_000).count()
    assert page.locator("tr.session-row").count() == cheap > 0
    assert page.locator("#cost_min").input_value() == "0.01"
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "list-cost.png"), full_page=True)
