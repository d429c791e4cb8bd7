"""The session list gives the same rows, order and count whichever way it reads them.

``session_list`` reads a narrow selection through its filters' indexes and a broad one along
the sort's index (``sessions.FEW`` decides). Both must equal what the SDK's tables say,
computed here in Python from the rows themselves: every filter combination, every sort in
both directions, and a deep page.
"""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from dashboard.review.selectors import sessions

pytestmark = pytest.mark.django_db

TOOLS = ("lookup_order", "get_weather", "rare|tool%_é")  # the last: LIKE and separator characters
START = datetime(2025, 1, 1, tzinfo=UTC)


def _build(n: int) -> list[dict[str, Any]]:
    """``n`` sessions written with plain SQL (the triggers summarise them); their truth."""
    rng = random.Random(7)
    truth = []
    message_id = 0
    with connection.cursor() as cursor:
        for i in range(n):
            sid = f"s{i:03d}"
            updated = START + timedelta(days=rng.randint(0, 90), seconds=rng.randint(0, 9))
            if i % 17 == 5:
                updated = START + timedelta(days=10, seconds=i)  # ties on the day
            cursor.execute(
                "INSERT INTO agent_sessions (session_id, created_at, updated_at) "
                "VALUES (%s, %s, %s)",
                [sid, START - timedelta(days=i % 13), updated],
            )
            turns = rng.randint(0, 4)
            tools: set[str] = set()
            title = None
            seq = 0
            branches = {"main"} if turns else set()
            tokens = 0
            for turn in range(1, turns + 1):
                items: list[tuple[str, str | None, dict[str, Any]]] = [
                    (
                        "user",
                        None,
                        {"role": "user", "content": f"question {i}-{turn} {rng.random()}"},
                    )
                ]
                if rng.random() < 0.5:
                    tool = TOOLS[0] if rng.random() < 0.7 else TOOLS[1]
                    if i % 23 == 3:
                        tool = TOOLS[2]
                    tools.add(tool)
                    items.append(("function_call", tool, {"type": "function_call", "name": tool}))
                for mtype, tool_name, data in items:
                    message_id += 1
                    seq += 1
                    cursor.execute(
                        "INSERT INTO agent_messages (id, session_id, message_data) "
                        "VALUES (%s, %s, %s)",
                        [message_id, sid, json.dumps(data)],
                    )
                    cursor.execute(
                        "INSERT INTO message_structure (session_id, message_id, branch_id, "
                        "message_type, sequence_number, user_turn_number, branch_turn_number, "
                        "tool_name) VALUES (%s, %s, 'main', %s, %s, %s, %s, %s)",
                        [sid, message_id, mtype, seq, turn, turn, tool_name],
                    )
                    if title is None and mtype == "user":
                        title = data["content"]
                used = rng.randint(1, 900)
                tokens += used
                cursor.execute(
                    "INSERT INTO turn_usage (session_id, branch_id, user_turn_number, "
                    "total_tokens) VALUES (%s, 'main', %s, %s)",
                    [sid, turn, used],
                )
            if turns and i % 4 == 0:  # a branch sharing turn 1's user message
                seq += 1
                cursor.execute(
                    "INSERT INTO message_structure (session_id, message_id, branch_id, "
                    "message_type, sequence_number, user_turn_number, branch_turn_number) "
                    "SELECT session_id, message_id, 'alt', message_type, %s, 1, 1 "
                    "FROM message_structure WHERE session_id = %s AND message_type = 'user' "
                    "AND user_turn_number = 1",
                    [seq, sid],
                )
                branches.add("alt")
            truth.append(
                {
                    "session_id": sid,
                    "title": title or "(no user message)",
                    "turns": turns,
                    "branches": len(branches),
                    "tokens": tokens,
                    "created": START - timedelta(days=i % 13),
                    "updated": updated,
                    "tools": tools,
                }
            )
    return truth


SORT_KEYS = {
    "title": "title",
    "turns": "turns",
    "branches": "branches",
    "tokens": "tokens",
    "updated": "updated",
    "created": "created",
}


def _expected(truth, filters: sessions.SessionListFilters, sort: str) -> list[str]:
    rows = [
        t
        for t in truth
        if (not filters.tool or filters.tool in t["tools"])
        and (not filters.has_branches or t["branches"] > 1)
        and (not filters.updated_from or t["updated"].date() >= filters.updated_from)
        and (not filters.updated_to or t["updated"].date() <= filters.updated_to)
    ]
    key = SORT_KEYS[sort.lstrip("-")]
    descending = sort.startswith("-")

    def order(t: dict[str, Any]) -> Any:
        value = t[key]
        if key == "title" and value == "(no user message)":
            value = ""
        return (value, t["session_id"])

    return [t["session_id"] for t in sorted(rows, key=order, reverse=descending)]


FILTERS = [
    sessions.SessionListFilters(
        tool=tool,
        has_branches=branched,
        updated_from=date(2025, 1, 11) if dates else None,
        updated_to=date(2025, 2, 20) if dates else None,
    )
    for tool, branched, dates in itertools.product(("", *TOOLS), (False, True), (False, True))
]


@pytest.mark.parametrize("few", [0, 10**9], ids=["along-the-sort", "through-the-filters"])
def test_every_filter_and_sort_reads_what_the_rows_say(monkeypatch, few):
    truth = _build(120)
    monkeypatch.setattr(sessions, "FEW", few)
    for filters in FILTERS:
        for key in SORT_KEYS:
            for sort in (key, f"-{key}"):
                expected = _expected(truth, filters, sort)
                pages = []
                page = sessions.session_list(filters=filters, sort=sort, per_page=7)
                assert page.total == len(expected), (filters, sort)
                for number in range(1, page.num_pages + 1):
                    got = sessions.session_list(filters=filters, sort=sort, page=number, per_page=7)
                    pages += [row.session_id for row in got.rows]
                assert pages == expected, (filters, sort)
    by_id = {t["session_id"]: t for t in truth}
    for row in sessions.session_list(sort="-tokens", per_page=200).rows:
        t = by_id[row.session_id]
        assert (row.turns, row.branches, row.total_tokens) == (
            t["turns"],
            t["branches"],
            t["tokens"],
        )
        assert row.title.startswith(t["title"][:40])
    assert sessions.tool_names() == tuple(sorted({tool for t in truth for tool in t["tools"]}))
