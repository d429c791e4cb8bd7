"""The page-shaped reads: branch tree, switchers, per-branch usage, turns, series, compare."""

from __future__ import annotations

import pytest

from dashboard.review import selectors
from tests.support.builders import Writer, trip_session, turn_items

pytestmark = pytest.mark.django_db


@pytest.fixture
def trip():
    trip_session("trip")
    return selectors.branch_tree_get(session_id="trip")


def test_branch_tree_parents_and_fork_turns(trip):
    nodes = trip.nodes
    assert (nodes["main"].parent_id, nodes["main"].fork_turn) == (None, 1)
    assert (nodes["tokyo"].parent_id, nodes["tokyo"].fork_turn) == ("main", 3)
    assert (nodes["tokyo/nikko"].parent_id, nodes["tokyo/nikko"].fork_turn) == ("tokyo", 4)
    assert (nodes["bigger budget"].parent_id, nodes["bigger budget"].fork_turn) == ("main", 4)


def test_branch_tree_flat_order_is_depth_first(trip):
    assert [n.branch_id for n in trip.flat()] == ["main", "tokyo", "tokyo/nikko", "bigger budget"]


def test_branch_tree_tokens_since_fork_count_own_rows(trip):
    assert trip.nodes["tokyo"].tokens_since_fork == 1050 + 1160
    assert trip.nodes["bigger budget"].own_tokens == 540 + 645


def test_branch_tree_flags_turns_without_usage(trip):
    assert trip.nodes["main"].turns_without_usage == 1  # turn 5
    assert trip.nodes["tokyo"].turns_without_usage == 0


def test_usage_owner_of_shared_turn_is_ancestor(trip):
    assert trip.owner("tokyo/nikko", 2) == "main"
    assert trip.owner("tokyo/nikko", 3) == "tokyo"
    assert trip.owner("tokyo/nikko", 4) == "tokyo/nikko"


def test_switcher_groups_branches_sharing_the_turn(trip):
    # At turn 3, main and "bigger budget" are one variant; tokyo and nikko the other.
    assert trip.siblings_at("main", 3) == ("main", "tokyo")
    assert trip.siblings_at("bigger budget", 3) == ("bigger budget", "tokyo")
    assert trip.siblings_at("tokyo/nikko", 3) == ("main", "tokyo/nikko")
    assert trip.siblings_at("tokyo", 4) == ("tokyo", "tokyo/nikko")


def test_usage_series_counts_tool_calls_per_turn_along_the_branch(trip):
    def calls(branch):
        return selectors.usage_series_get(session_id="trip", branch_id=branch).tool_calls

    assert calls("main") == ((1, "calculator", 1), (3, "calculator", 1))
    # Shared turns 1-2 come with the copy; tokyo's own turn 3 calls the tool, turn 4 does not.
    assert calls("tokyo") == ((1, "calculator", 1), (3, "calculator", 1))
    assert calls("bigger budget") == ((1, "calculator", 1), (3, "calculator", 1))
    Writer("quiet").turn(turn_items(1))
    assert selectors.usage_series_get(session_id="quiet", branch_id="main").tool_calls == ()


def test_tool_calls_group_by_tool_and_skip_outputs():
    writer = Writer("loop")
    items = turn_items(1, tool=True)
    items[1:1] = [
        {"type": "function_call", "name": "search", "call_id": f"s{i}", "arguments": "{}"}
        for i in range(3)
    ] + [{"type": "function_call_output", "call_id": f"s{i}", "output": "x"} for i in range(3)]
    writer.turn(items)
    series = selectors.usage_series_get(session_id="loop", branch_id="main")
    assert series.tool_calls == ((1, "calculator", 1), (1, "search", 3))
    assert series.as_json()["tool_calls"][1] == {"turn": 1, "tool": "search", "calls": 3}


def test_turns_get_pairs_tool_calls_with_outputs(trip):
    turns = selectors.turns_get(tree=trip, branch_id="main", first=1, last=1)
    (tool,) = [i.tool for i in turns[0].items if i.kind == "tool"]
    assert (tool.name, tool.call_id, tool.output) == ("calculator", "c1", "2")
    assert '"expression": "1*2"' in tool.arguments


def test_turns_get_shared_turns_take_usage_from_owner(trip):
    turns = selectors.turns_get(tree=trip, branch_id="tokyo", first=2, last=3)
    assert turns[0].shared_with_parent and turns[0].usage.branch_id == "main"
    assert not turns[1].shared_with_parent and turns[1].usage.total_tokens == 1050


def test_turns_get_missing_usage_is_none(trip):
    (turn,) = selectors.turns_get(tree=trip, branch_id="main", first=5, last=5)
    assert turn.usage is None


def test_turn_page_latest_first_with_earlier_link():
    w = Writer("long")
    w.bulk(60)
    tree = selectors.branch_tree_get(session_id="long")
    page = selectors.turn_page_get(tree=tree, branch_id="main")
    assert (page.first, page.last) == (36, 60)
    assert page.earlier_url.endswith("start=11") and page.later_url is None


def test_turn_page_around_turn_contains_it():
    Writer("long").bulk(60)
    tree = selectors.branch_tree_get(session_id="long")
    page = selectors.turn_page_get(tree=tree, branch_id="main", turn=7)
    assert page.first <= 7 <= page.last


def test_usage_series_cumulative_lines_meet_at_fork(trip):
    series = selectors.usage_series_get(session_id="trip", branch_id="tokyo")
    lines = {line.branch_id: line for line in series.cumulative}
    main_at_2 = dict(lines["main"].points)[2]
    assert lines["tokyo"].points[0] == (2, main_at_2)
    assert series.missing_turns == ()


def test_usage_series_flags_missing_turns(trip):
    series = selectors.usage_series_get(session_id="trip", branch_id="main")
    assert series.missing_turns == (5,)
    assert series.per_turn[4].missing and series.per_turn[4].total_tokens is None


def test_branch_compare_aligns_from_fork(trip):
    compare = selectors.branch_compare_get(session_id="trip", a="main", b="bigger budget")
    assert compare.fork_turn == 4
    assert [r.turn for r in compare.rows] == [4, 5, 6]
    assert compare.rows[2].right is None
    assert "<ins>" in compare.rows[0].right_diff_html or compare.rows[0].text_differs is False


def test_branch_compare_tool_sequences_differ(trip):
    compare = selectors.branch_compare_get(session_id="trip", a="main", b="tokyo")
    assert compare.rows[0].tools_left == ("calculator",) == compare.rows[0].tools_right
    assert compare.rows[0].text_differs is False or compare.rows[0].turn == 3


def test_session_list_rows_and_sorting(trip):
    Writer("small").turn(turn_items(1, text="hello there"))
    page = selectors.session_list(sort="-turns")
    assert [r.session_id for r in page.rows] == ["trip", "small"]
    trip_row = page.rows[0]
    assert trip_row.branches == 4 and trip_row.title == "question 1"
    assert trip_row.turns == 6 + 2 + 1 + 2


def test_session_list_filters(trip):
    Writer("small").turn(turn_items(1))
    assert [
        r.session_id
        for r in selectors.session_list(
            filters=selectors.SessionListFilters(has_branches=True)
        ).rows
    ] == ["trip"]
    assert [
        r.session_id
        for r in selectors.session_list(
            filters=selectors.SessionListFilters(tool="calculator")
        ).rows
    ] == ["trip"]


def test_search_hits_label_shared_prefix_and_branch_only(trip):
    shared = selectors.search_hits(query="question 2")
    assert shared and shared[0].shared and set(shared[0].branches) >= {"main", "tokyo"}
    only = selectors.search_hits(query="nikko day trip")
    assert only and not only[0].shared and only[0].branch_id == "tokyo/nikko"
    assert only[0].turn == 4 and "<mark>" in only[0].snippet_html


def test_search_within_the_list_filters(trip):
    Writer("plain").turn(turn_items(1, text="question 2 again"))  # no tool, no branches
    everywhere = {h.session_id for h in selectors.search_hits(query="question 2")}
    assert everywhere == {"trip", "plain"}
    for filters in (
        selectors.SessionListFilters(tool="calculator"),
        selectors.SessionListFilters(has_branches=True),
    ):
        within = selectors.session_ids(filters)
        hits = selectors.search_hits(query="question 2", within=within)
        assert {h.session_id for h in hits} == {"trip"}, filters
    assert selectors.session_ids(selectors.SessionListFilters()) is None  # no filter: all


def test_search_ignores_json_keys(trip):
    assert selectors.search_hits(query="role") == ()


def test_search_non_ascii():
    Writer("café").turn(turn_items(1, text="un café crème, s'il vous plaît"))
    hits = selectors.search_hits(query="crème")
    assert hits and hits[0].session_id == "café"
