"""Datasets: fine-tuning JSONL (checked against the chat format's rules), evaluation JSONL,
the annotations CSV; the branch choice, the list's filters, hostile rows, flat memory."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations import reviews, services
from conversations.exchange import datasets, snapshot
from conversations.exchange.datasets import (
    BranchChoice,
    DatasetError,
    DatasetReport,
    dataset_chunks,
    finetune_problems,
)
from conversations.models import ScoreDefinition
from dashboard.review.datasets import list_selection
from tests.support.builders import Writer, turn_items

pytestmark = pytest.mark.django_db


def _export(fmt: str, **kwargs: Any) -> tuple[str, DatasetReport]:
    report = DatasetReport()
    text = "".join(dataset_chunks(fmt=fmt, report=report, **kwargs))
    return text, report


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def _call(n: int) -> dict[str, Any]:
    arguments = json.dumps({"expression": f"{n}*2"})
    return {
        "id": f"c{n}",
        "type": "function",
        "function": {"name": "calculator", "arguments": arguments},
    }


def _turn(n: int, tool: bool = False, text: str | None = None) -> list[dict[str, Any]]:
    """The chat messages of ``turn_items(n, tool=tool, text=text)``."""
    answer = f"answer **{n}**" + (f" about {text}" if text else "")
    messages: list[dict[str, Any]] = [{"role": "user", "content": text or f"question {n}"}]
    if tool:
        messages += [
            {"role": "assistant", "tool_calls": [_call(n)]},
            {"role": "tool", "tool_call_id": f"c{n}", "content": str(n * 2)},
        ]
    return [*messages, {"role": "assistant", "content": answer}]


@pytest.fixture
def people(django_user_model):
    alice = django_user_model.objects.create_user("alice")
    helpful = ScoreDefinition.objects.create(name="helpful", kind="boolean")
    quality = ScoreDefinition.objects.create(
        name="quality", kind="numeric", min_value=1, max_value=5
    )
    ScoreDefinition.objects.create(name="failure", kind="categorical", labels=["a", "b"])
    return {"alice": alice, "helpful": helpful, "quality": quality}


@pytest.fixture
def chats(people):
    """``a``: main (3 turns, the 2nd with a tool call), ``alt`` from turn 2 (preferred),
    ``good`` from turn 3; ``b``: main only, 2 turns; scores favour ``good`` in ``a``."""
    a = Writer("a")
    a.turn(turn_items(1))
    a.turn(turn_items(2, tool=True))
    a.turn(turn_items(3))
    a.branch(2, "alt")
    a.turn(turn_items(2, text="alt two"))
    a.switch("main")
    a.branch(3, "good")
    a.turn(turn_items(3, text="good three"))
    b = Writer("b")
    b.turn(turn_items(1, text="bee"))
    b.turn(turn_items(2, tool=True))
    services.branch_prefer(session_id="a", branch_id="alt")
    alice, quality = people["alice"], people["quality"]
    for branch, turn, value in (("good", 3, 5), ("good", 1, 4), ("main", 1, 3), ("alt", 0, 2)):
        target = reviews.Target("a", branch, turn)
        reviews.score_set(user=alice, target=target, definition=quality, value=value)
    reviews.score_set(
        user=alice,
        target=reviews.Target("a", "alt", 2),
        definition=people["helpful"],
        value=1,
        comment="ok",
    )
    reviews.comment_add(user=alice, target=reviews.Target("a", "alt", 2), body="Nice **tool** use.")
    reviews.tag_add(user=alice, target=reviews.Target("a", "alt", 2), tag="gold")
    reviews.tag_add(user=alice, target=reviews.Target("b"), tag="=HYPERLINK(1)")


def test_finetune_lines_follow_the_chat_format(chats):
    text, report = _export("finetune")
    lines = text.splitlines()
    assert lines and all(finetune_problems(line) == [] for line in lines)
    data = _lines(text)
    # a on its preferred branch alt (turns 1 and 2), b on main (turns 1 and 2).
    assert len(data) == 4 == report.lines
    assert data[0] == {"messages": _turn(1)}
    assert data[1] == {"messages": _turn(1) + _turn(2, text="alt two")}
    assert data[2] == {"messages": _turn(1, text="bee")}
    assert data[3] == {"messages": _turn(1, text="bee") + _turn(2, tool=True)}
    assert (report.sessions_total, report.sessions_done, report.skipped_rows) == (2, 2, 0)


def test_branch_choice(chats):
    main, _ = _export("finetune", branch=BranchChoice.parse("main"))
    assert _lines(main)[2] == {"messages": _turn(1) + _turn(2, tool=True) + _turn(3)}
    best, _ = _export("finetune", branch=BranchChoice.parse("best:quality"))
    a_lines = [d for d in _lines(best) if d["messages"][0]["content"] == "question 1"]
    assert a_lines[-1]["messages"][-2:] == _turn(3, text="good three")  # good: average 4.5
    named, report = _export("finetune", branch=BranchChoice.parse("good"))
    assert len(_lines(named)) == 3 and report.missing_branches == 1  # b has no "good"
    assert BranchChoice.parse("best", definition="quality") == BranchChoice("best", "", "quality")
    with pytest.raises(DatasetError):
        BranchChoice.parse("best")  # by what?
    for bad in ("best:failure", "best:nope"):  # categories rank nothing; no such score
        with pytest.raises(DatasetError):
            dataset_chunks(fmt="finetune", branch=BranchChoice.parse(bad))
    with pytest.raises(DatasetError):
        dataset_chunks(fmt="parquet")


def test_eval_lines(chats):
    text, _ = _export("eval")
    data = _lines(text)
    assert [(d["session_id"], d["branch_id"], d["turn"]) for d in data] == [
        ("a", "alt", 1),
        ("a", "alt", 2),
        ("b", "main", 1),
        ("b", "main", 2),
    ]
    second = data[1]
    assert second["input"] == _turn(1) + [{"role": "user", "content": "alt two"}]
    assert second["reference"] == "answer **2** about alt two"
    assert second["reference_messages"] == _turn(2, text="alt two")[1:]
    assert second["scores"] == [
        {"definition": "helpful", "value": 1.0, "label": None, "comment": "ok", "author": "alice"}
    ]
    assert [c["body"] for c in second["comments"]] == ["Nice **tool** use."]
    assert second["tags"] == ["gold"]
    assert data[0]["scores"] == [] and data[0]["comments"] == []
    tool_turn = data[3]
    assert tool_turn["input"][-1] == {"role": "user", "content": "question 2"}
    assert tool_turn["reference_messages"] == _turn(2, tool=True)[1:]


def test_annotations_csv(chats):
    text, report = _export("annotations")
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == datasets.CSV_COLUMNS
    body = rows[1:]
    assert len(body) == report.lines == 8
    assert {r[0] for r in body} == {"a", "b"}
    tag_row = next(r for r in body if r[0] == "b")
    assert tag_row[3] == "tag" and tag_row[6] == "'=HYPERLINK(1)"  # not a formula
    score = next(r for r in body if r[1] == "good" and r[2] == "3")
    assert score[3:7] == ["score", "quality", "5", ""] and score[8] == "alice"


def test_the_lists_filters_select_the_sessions(chats):
    text, report = _export("finetune", sessions=list_selection({"tag": "gold"}))
    assert report.sessions_total == 1 and {d["messages"][0]["content"] for d in _lines(text)} == {
        "question 1"
    }
    csv_text, _ = _export("annotations", sessions=list_selection({"score": "quality"}))
    assert {r[0] for r in list(csv.reader(io.StringIO(csv_text)))[1:]} == {"a"}
    empty, report = _export("eval", sessions=list_selection({"status": "reviewed"}))
    assert empty == "" and report.sessions_total == 0


def _insert(sid: str, rows: list[tuple[int, str, str]]) -> None:
    """Rows (turn, message_type, stored text) on main of a new session, with plain SQL."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM agent_messages")
        next_id = cursor.fetchone()[0] + 1
        cursor.execute(
            "INSERT INTO agent_sessions (session_id, created_at, updated_at) "
            "VALUES (%s, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            [sid],
        )
        for seq, (turn, mtype, data) in enumerate(rows, start=1):
            cursor.execute(
                "INSERT INTO agent_messages (id, session_id, message_data) VALUES (%s, %s, %s)",
                [next_id + seq, sid, data],
            )
            cursor.execute(
                "INSERT INTO message_structure (session_id, message_id, branch_id, "
                "message_type, sequence_number, user_turn_number, branch_turn_number) "
                "VALUES (%s, %s, 'main', %s, %s, %s, %s)",
                [sid, next_id + seq, mtype, seq, turn, turn],
            )


def test_hostile_rows_are_skipped_and_counted(people):
    sqlite = connection.vendor == "sqlite"  # PostgreSQL's jsonb refuses what is not JSON
    odd = 'odd\n"id",=1 \u00e9\U0001f600'
    text_value = "ok \u0000 \ud800" if sqlite else "ok \u0007"

    def item(**fields: Any) -> str:
        return json.dumps(fields)

    rows = [
        (0, "system", item(role="developer", content="Be brief.")),
        (1, "user", item(role="user", content=[{"type": "input_text", "text": "hi"}])),
        (1, "message", "42"),
        (1, "function_call", item(type="function_call", name="x")),  # no call id
        (1, "function_call_output", item(type="function_call_output", call_id="zz")),
        (1, "reasoning", item(type="reasoning", summary=[])),
        (1, "web_search_call", item(type="web_search_call", action={})),
        (1, "function_call", item(type="function_call", name="f", call_id="k", arguments={})),
        (1, "message", item(type="message", role="assistant", content=text_value)),
        (2, "user", item(role="user", content="again")),
        (2, "function_call", item(type="function_call", name="f", call_id="k2", arguments="{}")),
    ]
    if sqlite:
        rows.insert(2, (1, "message", "{not json"))
    _insert(odd, rows)
    reviews.comment_add(user=people["alice"], target=reviews.Target(odd), body="-1 point")
    text, report = _export("finetune")
    lines = text.splitlines()
    assert len(lines) == 1 and finetune_problems(lines[0]) == []
    (line,) = _lines(text)
    assert line["messages"][0] == {"role": "system", "content": "Be brief."}
    assert line["messages"][1] == {"role": "user", "content": "hi"}
    # The unanswered call k went with the next message; the text keeps its odd characters.
    assert line["messages"][2] == {"role": "assistant", "content": text_value}
    assert len(line["messages"]) == 3
    # not an object, no call id, an output for no call (+ the undecodable row on SQLite)
    assert report.skipped_rows == 3 + sqlite
    assert report.unsupported_items == 1  # the web search (reasoning: left out silently)
    assert report.skipped_turns == 1  # turn 2 ends in a call without an answer
    text.encode("utf-8")  # a lone surrogate is escaped, not written raw
    eval_text, _ = _export("eval")
    assert _lines(eval_text)[0]["session_id"] == odd
    csv_text, _ = _export("annotations")
    row = list(csv.reader(io.StringIO(csv_text)))[1]
    assert row[0] == odd
    assert row[7] == "'-1 point"  # a spreadsheet does not read it as a formula


def test_finetune_problems_finds_what_breaks_the_rules():
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    assert finetune_problems(json.dumps(good)) == []
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    cases = {
        "not json": "{",
        "no messages": json.dumps({"prompt": "x"}),
        "bad role": json.dumps(
            {"messages": [{"role": "robot", "content": "x"}, good["messages"][1]]}
        ),
        "content": json.dumps(
            {"messages": [{"role": "user", "content": ["x"]}, good["messages"][1]]}
        ),
        "last": json.dumps({"messages": [*good["messages"], {"role": "user", "content": "more"}]}),
        "no assistant": json.dumps({"messages": [{"role": "user", "content": "q"}]}),
        "empty assistant": json.dumps(
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}
        ),
        "orphan tool": json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "tool", "tool_call_id": "c", "content": "4"},
                    {"role": "assistant", "content": "a"},
                ]
            }
        ),
        "wrong id": json.dumps(
            {
                "messages": [
                    {"role": "assistant", "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": "d", "content": "4"},
                    {"role": "assistant", "content": "a"},
                ]
            }
        ),
    }
    for name, line in cases.items():
        assert finetune_problems(line), name


def _many(count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        w = Writer(f"m{n:04d}")
        for turn in range(1, 4):
            w.turn(turn_items(turn, tool=turn == 2, text="x" * 2000 + str(n)), None)


def _comments(author: Any, numbers: range) -> None:
    for n in numbers:
        for _ in range(2):
            target = reviews.Target(f"m{n:04d}")
            reviews.comment_add(user=author, target=target, body="y" * 19_000)


def _measure(fmt: str) -> tuple[int, int, int]:
    """(peak bytes, queries, bytes written) of one export, output counted and dropped
    (two runs: the captured queries would count in the peak)."""
    with CaptureQueriesContext(connection) as queries:
        for _ in dataset_chunks(fmt=fmt):
            pass
    size = 0
    tracemalloc.start()
    try:
        for chunk in dataset_chunks(fmt=fmt):
            size += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, len(queries), size


@pytest.mark.parametrize("fmt", ["finetune", "eval", "annotations"])
def test_memory_and_queries_stay_flat(monkeypatch, people, fmt):
    monkeypatch.setattr(datasets, "SESSIONS_PER_BATCH", 5)
    monkeypatch.setattr(datasets, "ROWS_PER_FETCH", 20)
    monkeypatch.setattr(snapshot, "CHUNK_CHARS", 4096)  # both sizes span many pieces
    _many(10)
    _comments(people["alice"], range(10))
    small_peak, small_queries, small_size = _measure(fmt)
    _many(50, start=10)
    _comments(people["alice"], range(10, 60))
    large_peak, large_queries, large_size = _measure(fmt)
    assert large_size > 5 * small_size
    # Six times the data, about the same peak (a batch of sessions, a piece of text): what
    # grows is the database drivers' bounded caches of statements (psycopg's parsed queries,
    # sqlite3's cursor list), a few KB per batch, nothing like the data.
    grown = large_peak - small_peak
    assert grown < 0.1 * (large_size - small_size), (small_peak, large_peak, large_size)
    # A fixed number of queries per batch of 5 sessions (2 batches + the empty end, then 12 +1).
    per_batch, rest = divmod(large_queries - small_queries, 10)
    assert rest == 0 and 1 <= per_batch <= 5, (small_queries, large_queries)


def test_user_names_and_dates_in_notes(chats):
    text, _ = _export("eval")
    comment = _lines(text)[1]["comments"][0]
    assert comment["author"] == "alice" and comment["created_at"].startswith("20")
    assert get_user_model().objects.filter(username="alice").exists()
