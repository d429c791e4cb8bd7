"""Cost (issue 16 item 4): prices from genai-prices' bundled table, settings overrides, unknown
models ("no price"), the free offline model, estimates with FORKVIEW_DEFAULT_MODEL, no network
ever; and the per turn / branch / session selector on traced sessions (real databases; one
test runs the real ``Runner`` with the processor).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from agents import Runner
from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from genai_prices import Usage, calc_price
from genai_prices import data_snapshot as gp_snapshot

from conversations import costs
from conversations.costs import (
    Cost,
    CostTotal,
    estimated_cost,
    format_usd,
    response_cost,
    span_cost,
    total,
)
from conversations.models import AgentSpan, AgentTrace, SessionSummary
from conversations.session import DjangoSession
from dashboard.review.selectors.traces import SessionTraces, session_traces_get
from dashboard.review.selectors.tree import branch_tree_get
from tests.support.builders import trip_session

REPO = Path(__file__).resolve().parents[2]
M = Decimal(1_000_000)

# Published list prices, $ per million tokens: (input, cached input, output).
LIST_PRICES = {
    "gpt-4o": (Decimal("2.5"), Decimal("1.25"), Decimal("10")),
    "gpt-4.1-mini": (Decimal("0.4"), Decimal("0.1"), Decimal("1.6")),
    "o3": (Decimal("2"), Decimal("0.5"), Decimal("8")),
    "claude-sonnet-4-5": (Decimal("3"), Decimal("0.3"), Decimal("15")),
}


def by_hand(model: str, inp: int, out: int, cached: int = 0) -> Decimal:
    p_in, p_cached, p_out = LIST_PRICES[model]
    return ((inp - cached) * p_in + cached * p_cached + out * p_out) / M


# ---- Prices ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(LIST_PRICES))
@pytest.mark.parametrize(
    ("inp", "out", "cached", "reasoning"),
    [(1200, 300, 0, 0), (1200, 300, 200, 0), (54_321, 8_765, 40_000, 5_000), (0, 0, 0, 0)],
)
def test_prices_match_genai_prices_and_hand_computation(model, inp, out, cached, reasoning):
    cost = response_cost(
        model=model,
        input_tokens=inp,
        output_tokens=out,
        cached_input_tokens=cached,
        reasoning_tokens=reasoning,
    )
    theirs = calc_price(
        Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=cached), model
    ).total_price
    assert cost == Cost(usd=theirs, model=model)
    assert cost.usd == by_hand(model, inp, out, cached)


def test_reasoning_tokens_are_part_of_output_never_added():
    plain = response_cost(model="o3", input_tokens=1000, output_tokens=500)
    reasoning = response_cost(
        model="o3", input_tokens=1000, output_tokens=500, reasoning_tokens=400
    )
    assert plain.usd == reasoning.usd == by_hand("o3", 1000, 500)
    # genai-prices agrees: its output_reasoning_tokens are a part of output_tokens.
    theirs = calc_price(
        Usage(input_tokens=1000, output_tokens=500, output_reasoning_tokens=400), "o3"
    )
    assert theirs.total_price == plain.usd


def test_a_provider_prefix_is_looked_up_without_it():
    assert response_cost(model="openai/gpt-4o", input_tokens=1000, output_tokens=100).usd == (
        by_hand("gpt-4o", 1000, 100)
    )


def test_unknown_models_have_no_price_and_are_counted_never_guessed():
    unknown = response_cost(model="acme-llm-7", input_tokens=1000, output_tokens=100)
    assert unknown == Cost(usd=None, model="acme-llm-7")
    nothing = response_cost(model=None, input_tokens=1000, output_tokens=100)
    assert nothing == Cost(usd=None, model=None)
    known = response_cost(model="gpt-4o", input_tokens=1000, output_tokens=100)
    summed = total([known, unknown, nothing])
    assert summed == CostTotal(usd=known.usd, priced=1, unpriced=2, estimated=0, free=0)
    assert format_usd(None) == "no price"
    assert costs.describe(summed) == f"{format_usd(known.usd)} (2 no price)"
    assert costs.describe(total([unknown])) == "no price"


def test_the_offline_demo_model_is_free_and_says_so():
    from dashboard.demo.model import MODEL_NAME

    assert MODEL_NAME in costs.FREE_MODELS
    cost = response_cost(model=MODEL_NAME, input_tokens=10_000, output_tokens=5_000)
    assert cost == Cost(usd=Decimal(0), model=MODEL_NAME, free=True)
    assert costs.describe(total([cost, cost])) == "free"
    assert total([cost]).priced == 1 and total([cost]).free == 1


def test_settings_override_and_add_models(settings):
    settings.FORKVIEW_PRICES = {
        "gpt-4o": {"input": 1, "cached_input": "0.5", "output": 2},
        "My-Local-Model": {"input": 0.2, "output": 0.4},
    }
    over = response_cost(
        model="gpt-4o", input_tokens=3000, output_tokens=1000, cached_input_tokens=1000
    )
    assert over.usd == (2000 * 1 + 1000 * Decimal("0.5") + 1000 * 2) / M
    added = response_cost(
        model="my-local-model", input_tokens=3000, output_tokens=1000, cached_input_tokens=1000
    )
    # cached_input defaults to the input price; names match case-insensitively
    assert added.usd == (3000 * Decimal("0.2") + 1000 * Decimal("0.4")) / M
    # the table still prices the rest
    assert response_cost(model="o3", input_tokens=1000, output_tokens=10).usd == by_hand(
        "o3", 1000, 10
    )


@pytest.mark.parametrize(
    "bad",
    [
        ["gpt-4o"],
        {"m": {"input": 1}},
        {"m": {"input": -1, "output": 1}},
        {"m": {"input": "cheap", "output": 1}},
        {"m": {"input": 1, "output": 1, "per_request": 3}},
        {"m": {"input": True, "output": 1}},
    ],
)
def test_bad_price_settings_say_what_is_wrong(settings, bad):
    settings.FORKVIEW_PRICES = bad
    with pytest.raises(ImproperlyConfigured, match="FORKVIEW_PRICES"):
        response_cost(model="m", input_tokens=1, output_tokens=1)


def test_turns_without_traces_are_estimated_with_the_default_model(settings):
    settings.FORKVIEW_DEFAULT_MODEL = ""
    assert estimated_cost(input_tokens=1000, output_tokens=100) == Cost(usd=None, model=None)
    settings.FORKVIEW_DEFAULT_MODEL = "gpt-4.1-mini"
    cost = estimated_cost(input_tokens=1000, output_tokens=100, cached_input_tokens=500)
    assert cost == Cost(
        usd=by_hand("gpt-4.1-mini", 1000, 100, 500), model="gpt-4.1-mini", estimated=True
    )
    summed = total([cost, response_cost(model="o3", input_tokens=10, output_tokens=1)])
    assert summed.estimated == 1 and summed.priced == 2
    assert costs.describe(summed).endswith("(1 estimated)")
    settings.FORKVIEW_DEFAULT_MODEL = "acme-llm-7"  # an unknown default: no price, not estimated
    assert estimated_cost(input_tokens=1, output_tokens=1) == Cost(usd=None, model="acme-llm-7")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.0042"), "$0.0042"),
        (Decimal("0.00575"), "$0.0058"),
        (Decimal("0.00001"), "<$0.0001"),
        (Decimal("1.234"), "$1.23"),
        (Decimal("1234.5"), "$1,234.50"),
        (Decimal(0), "$0"),
        (None, "no price"),
    ],
)
def test_format_usd(value, text):
    assert format_usd(value) == text


# ---- Never the network ----------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """Every way out refused (and recorded)."""
    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access is blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_prices_never_touch_the_network(no_network):
    costs._snapshot.cache_clear()  # load the table again, with the network blocked
    for model in [*LIST_PRICES, "acme-llm-7", "openai/gpt-4.1-mini"]:
        response_cost(model=model, input_tokens=1000, output_tokens=100, cached_input_tokens=10)
    assert response_cost(model="gpt-4o", input_tokens=1000, output_tokens=0).usd == Decimal(
        "0.0025"
    )
    assert no_network == []
    assert costs._snapshot().from_auto_update is False


def test_an_auto_updated_snapshot_elsewhere_changes_nothing():
    """If anything in the process started genai-prices' UpdatePrices, its fetched snapshot
    would become the package's global one: Forkview prices with its own bundled snapshot."""
    before = response_cost(model="gpt-4o", input_tokens=1000, output_tokens=100)
    fake = gp_snapshot.DataSnapshot(providers=[], from_auto_update=True)
    gp_snapshot.set_custom_snapshot(fake)
    try:
        assert response_cost(model="gpt-4o", input_tokens=1000, output_tokens=100) == before
    finally:
        gp_snapshot.set_custom_snapshot(None)


def test_a_fresh_process_prices_with_every_socket_refused():
    """Importing and pricing in a new process (the table loaded from scratch) opens no socket."""
    code = """
import json, socket
attempts = []
def refuse(*a, **k):
    attempts.append(repr(a)[:80]); raise OSError("blocked")
socket.socket.connect = refuse; socket.socket.connect_ex = refuse
socket.create_connection = refuse; socket.getaddrinfo = refuse
import django; django.setup()
from conversations.costs import response_cost
usd = response_cost(model="gpt-4o", input_tokens=1000, output_tokens=100).usd
none = response_cost(model="acme-llm-7", input_tokens=1, output_tokens=1).usd
import genai_prices.update_prices as up
print(json.dumps({"usd": str(usd), "none": none, "attempts": attempts,
                  "updater_running": up._shared_updater.ref_count}))
"""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "dashboard.settings", "DJANGO_DEBUG": "1"}
    env.pop("FORKVIEW_PRICES", None)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {
        "usd": str(by_hand("gpt-4o", 1000, 100)),
        "none": None,
        "attempts": [],
        "updater_running": 0,
    }


# ---- The selector: per turn, per branch (since the fork), per session ------------------------


def _trace(trace_id, session_id, branch_id, turn, *spans, started=None):
    started = started or timezone.now()
    AgentTrace.objects.create(
        trace_id=trace_id,
        session_id=session_id,
        branch_id=branch_id,
        turn=turn,
        group_id=session_id,
        started_at=started,
        ended_at=started,
    )
    for n, (kind, model, inp, out, cached) in enumerate(spans):
        AgentSpan.objects.create(
            span_id=f"{trace_id}-{n}",
            trace_id=trace_id,
            kind=kind,
            name=model or "tool",
            model=model,
            input_tokens=inp,
            output_tokens=out,
            cached_input_tokens=cached,
            started_at=started,
            ended_at=started,
            duration_ms=10.0,
        )


@pytest.fixture
def traced_trip(db):
    """trip_session (main 1-6; tokyo from 3: 3-4; tokyo/nikko from 4: 4; bigger budget from 4:
    4-5) with traces on some turns: two model calls and a tool on main 1, an unknown model on
    main 2, the free model on tokyo 3, a trace without model spans on tokyo 4, and 'bigger
    budget' 4 and nikko 4."""
    trip_session("trip")
    _trace(
        "t1",
        "trip",
        "main",
        1,
        ("response", "gpt-4o", 1000, 100, 200),
        ("function", None, None, None, None),
        ("generation", "gpt-4.1-mini", 500, 50, 0),
    )
    _trace("t2", "trip", "main", 2, ("response", "acme-llm-7", 10, 10, 0))
    _trace("t3", "trip", "tokyo", 3, ("response", "forkview-offline-demo", 900, 90, 0))
    _trace("t4", "trip", "tokyo", 4, ("function", None, None, None, None))
    _trace("t5", "trip", "bigger budget", 4, ("response", "o3", 2000, 300, 1000))
    _trace("t6", "trip", "tokyo/nikko", 4, ("response", "gpt-4o", 3000, 10, 0))
    _trace("t7", "other", "main", 1, ("response", "gpt-4o", 999_999, 999, 0))


T1 = by_hand("gpt-4o", 1000, 100, 200) + by_hand("gpt-4.1-mini", 500, 50)
T5 = by_hand("o3", 2000, 300, 1000)
T6 = by_hand("gpt-4o", 3000, 10)


def _traces(session_id: str) -> SessionTraces:
    return session_traces_get(tree=branch_tree_get(session_id=session_id))


def turn_costs(session_id: str, branch_id: str) -> dict[int, CostTotal]:
    traces = _traces(session_id)
    last = traces.tree.nodes[branch_id].turns
    return {n: traces.turn(branch_id, n).cost for n in range(1, last + 1)}


def recorded(session_id: str) -> CostTotal:
    """The session's recorded cost as its list summary keeps it (by triggers)."""
    row = SessionSummary.objects.get(session_id=session_id)
    return costs.recorded_total(
        cost_nanos=row.cost_nanos, calls=row.model_calls, unpriced=row.unpriced_calls
    )


def test_turn_costs_follow_the_branch_path(traced_trip, settings):
    settings.FORKVIEW_DEFAULT_MODEL = ""
    main = turn_costs("trip", "main")
    assert sorted(main) == [1, 2, 3, 4, 5, 6]
    assert main[1] == CostTotal(usd=T1, priced=2, unpriced=0, estimated=0, free=0)
    assert main[2] == CostTotal(usd=Decimal(0), priced=0, unpriced=1, estimated=0, free=0)
    assert main[3].count == 0  # untraced, no default model: nothing known
    # tokyo/nikko: turns 1-2 from main, 3 from tokyo (free), 4 its own
    nikko = turn_costs("trip", "tokyo/nikko")
    assert nikko[1] == main[1] and nikko[3].free == 1 and nikko[3].usd == 0
    assert nikko[4].usd == T6
    assert turn_costs("trip", "tokyo")[4].count == 0  # traced, but no model call


def test_branch_cost_counts_the_turns_since_the_fork(traced_trip, settings):
    settings.FORKVIEW_DEFAULT_MODEL = ""
    traces = _traces("trip")
    assert traces.branch_cost("bigger budget").since_fork == CostTotal(T5, 1, 0, 0, 0)
    assert traces.path_cost("bigger budget").usd == T1 + T5
    assert traces.branch_cost("tokyo/nikko").since_fork.usd == T6
    assert traces.branch_cost("tokyo").since_fork == CostTotal(Decimal(0), 1, 0, 0, 1)
    assert traces.branch_cost("main").since_fork == CostTotal(T1, 2, 1, 0, 0)


def test_the_session_summary_keeps_the_recorded_cost_of_every_branch_once(traced_trip):
    trip = recorded("trip")
    assert trip == CostTotal(T1 + T5 + T6, priced=5, unpriced=1, estimated=0, free=0)
    # The page's branch costs add up to the same sum.
    traces = _traces("trip")
    assert sum(b.since_fork.usd for b in traces.branch_costs()) == trip.usd
    # A trace of a session that does not exist yet counts when the session arrives.
    assert not SessionSummary.objects.filter(session_id="other").exists()
    trip_session("other")
    assert recorded("other") == CostTotal(by_hand("gpt-4o", 999_999, 999), 1, 0, 0, 0)


def test_untraced_turns_are_estimated_with_the_default_model(traced_trip, settings):
    settings.FORKVIEW_DEFAULT_MODEL = "gpt-4.1-mini"
    main = turn_costs("trip", "main")
    # trip_session's main turn n has usage (100n, 10n); turn 5 has no usage row at all
    assert main[3] == CostTotal(by_hand("gpt-4.1-mini", 300, 30), 1, 0, 1, 0)
    assert main[5].count == 0
    assert main[1].estimated == 0 and main[2].unpriced == 1  # traced turns are never estimated
    assert turn_costs("trip", "tokyo")[4].count == 0  # traced without model calls: not estimated
    traces = _traces("trip")
    # estimated: main 3, 4, 6; bigger budget 5 (tokyo 3/4, nikko 4, bb 4 and main 1/2 traced)
    assert sum(b.since_fork.estimated for b in traces.branch_costs()) == 4


@pytest.mark.parametrize("turns", [(1, 2), (3, 40)])
def test_the_selector_runs_a_constant_number_of_queries(db, settings, turns):
    from tests.support.builders import Writer, turn_items

    settings.FORKVIEW_DEFAULT_MODEL = "gpt-4o"
    w = Writer("sized")
    first, count = turns
    for n in range(1, count + 1):
        w.turn(turn_items(n), (100, 10))
    for n in range(1, count + 1, 2):
        _trace(f"s{n}", "sized", "main", n, ("response", "gpt-4o", 100, 10, 0))
    tree = branch_tree_get(session_id="sized")
    with CaptureQueriesContext(connection) as queries:
        traces = session_traces_get(tree=tree)
    assert len(queries) == 3, [q["sql"] for q in queries]  # traces, spans, estimates
    traced = (count + 1) // 2
    main = traces.branch_cost("main").since_fork
    # every turn's usage is (100, 10): the traced ones recorded, the others estimated
    assert (main.usd, main.priced, main.estimated) == (
        count * by_hand("gpt-4o", 100, 10),
        count,
        count - traced,
    )
    assert recorded("sized").usd == traced * by_hand("gpt-4o", 100, 10)


def test_prices_are_recorded_once_when_spans_are_written(db, settings):
    """Every writer prices through the queryset: bulk_create, save; new prices apply to
    spans written after, and ``reprice_spans`` applies them to what was recorded."""
    from django.core.management import call_command

    trip_session("trip")
    _trace("t1", "trip", "main", 1, ("response", "acme-llm-7", 1000, 100, 0))
    AgentSpan.objects.bulk_create(
        [
            AgentSpan(
                span_id="b1",
                trace_id="t1",
                kind="generation",
                model="gpt-4o",
                input_tokens=2000,
                output_tokens=20,
                started_at=timezone.now(),
            ),
            AgentSpan(span_id="b2", trace_id="t1", kind="function", name="lookup"),
        ]
    )
    stored = dict(AgentSpan.objects.values_list("span_id", "cost_nanos"))
    assert stored == {"t1-0": None, "b1": costs.to_nanos(by_hand("gpt-4o", 2000, 20)), "b2": None}
    assert recorded("trip") == CostTotal(by_hand("gpt-4o", 2000, 20), 1, 1, 0, 0)
    settings.FORKVIEW_PRICES = {"acme-llm-7": {"input": 1, "output": 2}}
    assert AgentSpan.objects.get(span_id="t1-0").cost_nanos is None  # recorded, not re-read
    call_command("reprice_spans", verbosity=0)
    acme = Decimal(1000 * 1 + 100 * 2) / M
    assert AgentSpan.objects.get(span_id="t1-0").cost_nanos == costs.to_nanos(acme)
    assert recorded("trip") == CostTotal(by_hand("gpt-4o", 2000, 20) + acme, 2, 0, 0, 0)


def test_span_cost_prices_a_stored_span(db):
    span = AgentSpan(
        span_id="x",
        trace_id="t",
        kind="response",
        model="gpt-4.1-mini",
        input_tokens=4000,
        output_tokens=400,
        cached_input_tokens=1000,
        reasoning_tokens=100,
        started_at=timezone.now(),
    )
    assert span_cost(span).usd == by_hand("gpt-4.1-mini", 4000, 400, 1000)


# ---- The real Runner with the processor ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_traced_run_costs_what_its_usage_says(install, settings):  # noqa: F811
    from tests.conversations.test_tracing import agents_with_handoff

    settings.FORKVIEW_DEFAULT_MODEL = ""
    processor = install(include_model_data=True)
    session = DjangoSession(session_id="priced-run")
    triage, model = agents_with_handoff()
    model.name = "gpt-4o"
    await Runner.run(triage, "Weather?", session=session, run_config=await session.run_config())
    processor.force_flush()
    # agents_with_handoff's three calls: (input, output, cached)
    expected = (
        by_hand("gpt-4o", 100, 10, 20) + by_hand("gpt-4o", 130, 8, 100) + by_hand("gpt-4o", 150, 5)
    )
    per_turn = await sync_to_async(turn_costs)("priced-run", "main")
    assert per_turn == {1: CostTotal(expected, 3, 0, 0, 0)}
    assert (await sync_to_async(recorded)("priced-run")).usd == expected


from tests.conversations.test_tracing import install  # noqa: E402,F401  (the fixture)


def test_the_session_page_shows_the_branch_and_the_session_cost(
    traced_trip, settings, reviewer_client
):
    from conversations.costs import describe
    from dashboard.links import session_url

    settings.FORKVIEW_DEFAULT_MODEL = ""
    body = reviewer_client.get(session_url("trip", "tokyo/nikko")).content.decode()
    whole = _traces("trip").session_cost
    assert whole.usd == T1 + T5 + T6
    assert 'id="branch-cost" title="Cost of this branch' in body
    assert f"(session {describe(whole)})" in body
