"""Malformed imports end in one clear line (issue 12, hole 8).

Every malformed tree (``import_session``) and every malformed SDK file (``import_agents_db``)
ends in one ``CommandError`` line that names the session and the row, exit code 1, and
nothing is written; the tree's structure is checked before the first write (unique sequence
numbers, labels equal to the classifier's, turn numbers that never decrease along a branch,
references that resolve, readable dates). ``import_agents_db`` is all or nothing per file;
``--skip-bad-sessions`` imports the rest and says what it skipped and why.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agents.extensions.memory import AdvancedSQLiteSession
from django.core.management import CommandError, ManagementUtility, call_command

from conversations.exchange import tree_dumps, tree_export
from conversations.models import AgentMessage, AgentSession, MessageStructure, TurnUsage
from tests.support.sdk_harness import assistant, function_call, function_output, user
from tests.support.trees import tree_session

pytestmark = pytest.mark.django_db

Tree = dict[str, Any]


@pytest.fixture
def tree() -> Tree:
    """A valid exported tree of ``s1`` (two branches, tools, usage); the database is empty."""
    tree_session("s1")
    exported = json.loads(tree_dumps(tree_export(session_id="s1")))
    AgentSession.objects.all().delete()
    return exported


def _nothing_written() -> bool:
    return not (
        AgentSession.objects.exists()
        or AgentMessage.objects.exists()
        or MessageStructure.objects.exists()
        or TurnUsage.objects.exists()
    )


def _row(tree: Tree, message_type: str) -> dict[str, Any]:
    return next(r for r in tree["structure"] if r["message_type"] == message_type)


def _set(path: str, value: Any) -> Callable[[Tree], None]:
    """A mutation: ``structure.3.sequence_number`` = value (list indexes as digits)."""

    def mutate(tree: Tree) -> None:
        *parents, last = path.split(".")
        node: Any = tree
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value

    return mutate


def _duplicate_sequence(tree: Tree) -> None:
    tree["structure"][4]["sequence_number"] = tree["structure"][3]["sequence_number"]


def _contradicting_label(tree: Tree) -> None:
    _row(tree, "function_call")["tool_name"] = "not_the_tool"


def _user_labelled_assistant(tree: Tree) -> None:
    _row(tree, "user")["message_type"] = "assistant"


def _decreasing_turns(tree: Tree) -> None:
    main = [r for r in tree["structure"] if r["branch_id"] == "main"]
    main[-1]["user_turn_number"] = 1
    main[-1]["branch_turn_number"] = 1


def _duplicate_ref(tree: Tree) -> None:
    tree["messages"][1]["ref"] = tree["messages"][0]["ref"]


def _duplicate_usage(tree: Tree) -> None:
    tree["usage"].append(copy.deepcopy(tree["usage"][0]))


def _deep_item(tree: Tree) -> None:
    deep: Any = "bottom"
    for _ in range(700):  # past MAX_DEPTH (500), within what json.dumps can write
        deep = [deep]
    tree["messages"][0]["item"]["content"] = deep


# (mutation, words the one-line error must contain)
MALFORMED: dict[str, tuple[Callable[[Tree], None], tuple[str, ...]]] = {
    "duplicate sequence number": (_duplicate_sequence, ("structure row 5", "not unique")),
    "tool name contradicts the item": (_contradicting_label, ("contradict", "get_weather")),
    "message type contradicts the item": (_user_labelled_assistant, ("contradict", "'user'")),
    "turns decrease along a branch": (_decreasing_turns, ("never decrease", "'main'")),
    "unknown message ref": (_set("structure.2.message", 999), ("structure row 3", "999")),
    "ref not an integer": (_set("messages.0.ref", "one"), ("message 1", "integer")),
    "duplicate message ref": (_duplicate_ref, ("message 2", "not unique")),
    "sequence number as text": (_set("structure.0.sequence_number", "7"), ("structure row 1",)),
    "sequence number out of range": (
        _set("structure.0.sequence_number", 2**40),
        ("structure row 1", "out of range"),
    ),
    "4,000-digit turn": (
        _set("structure.1.user_turn_number", int("9" * 4000)),
        ("structure row 2", "out of range"),
    ),
    "unparseable message date": (
        _set("messages.0.created_at", "yesterday-ish"),
        ("message 1", "not a date"),
    ),
    "unparseable session date": (_set("session.created_at", "13/13/13"), ("not a date",)),
    "date of the wrong type": (_set("structure.0.created_at", 17), ("structure row 1", "int")),
    "branch id empty": (_set("structure.0.branch_id", ""), ("structure row 1", "branch_id")),
    "branch id with NUL": (_set("structure.0.branch_id", "ma\x00in"), ("NUL",)),
    "branch id with a lone surrogate": (
        _set("usage.0.branch_id", "\ud800"),
        ("usage row 1", "lone surrogate"),
    ),
    "session id with NUL": (_set("session.session_id", "s\x001"), ("NUL",)),
    "session id not text": (_set("session.session_id", 5), ("session id", "int")),
    "tokens as text": (_set("usage.0.input_tokens", "100"), ("usage row 1", "input_tokens")),
    "duplicate usage row": (_duplicate_usage, ("usage row", "second usage row")),
    "NaN in an item": (_set("messages.1.item.nan", float("nan")), ("message 2", "NaN")),
    "item nested 700 deep": (_deep_item, ("message 1", "nested deeper")),
    "messages not a list": (_set("messages", {"ref": 1}), ("'messages'", "not a list")),
    "structure row not an object": (_set("structure.0", [1, 2]), ("structure row 1", "object")),
    "reservations not a list": (_set("reservations", "main"), ("reservations",)),
    "preferred branch not text": (_set("preferred_branch", ["alt"]), ("preferred_branch",)),
}


def _import_file(path: Path, *args: str) -> str:
    out = io.StringIO()
    call_command("import_session", str(path), *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_tree_is_one_line_naming_the_row_and_writes_nothing(tree, tmp_path, case):
    mutate, words = MALFORMED[case]
    mutate(tree)
    path = tmp_path / "tree.json"
    # json.dumps writes NaN and lone surrogates as Python's json module reads them back.
    path.write_text(json.dumps(tree), encoding="utf-8")
    with pytest.raises(CommandError) as raised:
        _import_file(path)
    message = str(raised.value)
    assert "\n" not in message and len(message) < 600, message
    for word in words:
        assert word in message, message
    if case not in ("session id not text", "session id with NUL"):
        assert message.startswith("session 's1'"), message
    assert _nothing_written()


def test_the_valid_tree_imports(tree, tmp_path):
    """The corpus's base tree is valid: each case above fails for its own mutation only."""
    path = tmp_path / "tree.json"
    path.write_text(json.dumps(tree), encoding="utf-8")
    assert "Imported session 's1'" in _import_file(path)
    assert json.loads(tree_dumps(tree_export(session_id="s1"))) == tree


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"{not json", ("Cannot read", "Expecting")),
        (b'{"format": "forkview.session-tree", "x": "\xff\xfe"}', ("Cannot read", "utf-8")),
        (b"[" * 100_000 + b"]" * 100_000, ("Cannot read", "nested too deeply")),
        (b"[1, 2]", ("top level is a list",)),
        (b'{"format": "forkview.session-tree", "version": "9" }', ("Unsupported tree version",)),
    ],
    ids=["bad JSON", "not UTF-8", "100,000 deep", "a list", "unknown version"],
)
def test_unreadable_tree_file_is_one_line(tmp_path, content, words):
    path = tmp_path / "tree.json"
    path.write_bytes(content)
    with pytest.raises(CommandError) as raised:
        _import_file(path)
    message = str(raised.value)
    assert "\n" not in message and len(message) < 600, message
    for word in words:
        assert word in message, message
    assert _nothing_written()


# ---- SDK files --------------------------------------------------------------------------


def _sdk_file(path: Path) -> None:
    """Two sessions the real SDK wrote: ``a-good`` and ``b-bad`` (to be corrupted)."""

    async def go() -> None:
        for sid in ("a-good", "b-bad"):
            s = AdvancedSQLiteSession(session_id=sid, db_path=str(path), create_tables=True)
            await s.add_items(
                [
                    user("Weather in Paris?"),
                    function_call("get_weather", "c1", '{"city": "Paris"}'),
                    function_output("c1", "sunny"),
                    assistant("Sunny."),
                ]
            )
            await s.add_items([user("Thanks"), assistant("You're welcome.", "msg_2")])
            s.close()

    asyncio.run(go())


SDK_CORRUPTIONS = {
    "label contradicts the item": (
        "UPDATE message_structure SET tool_name = 'rm_rf' WHERE message_type = 'function_call' "
        "AND session_id = 'b-bad'",
        ("contradict",),
    ),
    "duplicate sequence number": (
        "UPDATE message_structure SET sequence_number = 1 WHERE session_id = 'b-bad' "
        "AND sequence_number = 2",
        ("not unique",),
    ),
    "turns decrease": (
        "UPDATE message_structure SET user_turn_number = 1 WHERE session_id = 'b-bad' "
        "AND sequence_number = 6",
        ("never decrease",),
    ),
    "unparseable date": (
        "UPDATE agent_messages SET created_at = 'last tuesday' WHERE session_id = 'b-bad'",
        ("not a date", "last tuesday"),
    ),
    "sequence number as text": (
        "UPDATE message_structure SET sequence_number = 'x' WHERE session_id = 'b-bad' "
        "AND sequence_number = 3",
        ("sequence_number", "integer"),
    ),
}


def _corrupt(path: Path, sql: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        assert conn.execute(sql).rowcount > 0
    conn.close()


def _agents_db(path: Path, *args: str) -> str:
    out = io.StringIO()
    call_command("import_agents_db", str(path), *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.parametrize("case", SDK_CORRUPTIONS)
def test_bad_sdk_session_stops_the_whole_file(tmp_path, case):
    sql, words = SDK_CORRUPTIONS[case]
    path = tmp_path / "agents.db"
    _sdk_file(path)
    _corrupt(path, sql)
    with pytest.raises(CommandError) as raised:
        _agents_db(path)
    message = str(raised.value)
    assert "\n" not in message, message
    assert message.startswith("session 'b-bad'"), message
    assert "Nothing was imported" in message and "--skip-bad-sessions" in message
    for word in words:
        assert word in message, message
    assert _nothing_written()  # a-good, imported before b-bad was read, is rolled back too


@pytest.mark.parametrize("case", SDK_CORRUPTIONS)
def test_skip_bad_sessions_imports_the_rest_and_says_why(tmp_path, case):
    sql, words = SDK_CORRUPTIONS[case]
    path = tmp_path / "agents.db"
    _sdk_file(path)
    _corrupt(path, sql)
    output = _agents_db(path, "--skip-bad-sessions")
    assert "Imported 1 session(s)" in output
    skipped = [line for line in output.splitlines() if line.startswith("Skipped session 'b-bad'")]
    assert len(skipped) == 1 and all(word in skipped[0] for word in words), output
    assert list(AgentSession.objects.values_list("session_id", flat=True)) == ["a-good"]
    assert MessageStructure.objects.filter(session_id="a-good").count() == 6


def test_the_uncorrupted_sdk_file_imports(tmp_path):
    path = tmp_path / "agents.db"
    _sdk_file(path)
    assert "Imported 2 session(s)" in _agents_db(path)


def test_a_file_that_is_not_sqlite_is_one_line(tmp_path):
    path = tmp_path / "agents.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CommandError) as raised:
        _agents_db(path)
    assert "\n" not in str(raised.value) and "Cannot read" in str(raised.value)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["import_session", "{tree}"], 1),
        (["import_agents_db", "{db}"], 1),
        (["import_session", "--no-such-option", "{tree}"], 2),
        (["import_agents_db"], 2),
        (["export_session", "no-such-session"], 1),
    ],
    ids=["bad tree", "bad SDK file", "unknown option", "missing argument", "unknown session"],
)
def test_exit_codes_as_documented(tmp_path, capsys, argv, code):
    """Run as from a shell: 1 for an error (one ``CommandError:`` line on stderr, no
    traceback), 2 for a usage error."""
    tree_file = tmp_path / "tree.json"
    tree_file.write_text('{"format": "forkview.session-tree", "version": 1, "session": {}}')
    db_file = tmp_path / "agents.db"
    _sdk_file(db_file)
    _corrupt(db_file, SDK_CORRUPTIONS["label contradicts the item"][0])
    args = [a.format(tree=tree_file, db=db_file) for a in argv]
    with pytest.raises(SystemExit) as exited:
        ManagementUtility(["manage.py", *args]).execute()
    assert exited.value.code == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code == 1:
        assert err.startswith("CommandError: ") and err.count("\n") == 1, err
    assert _nothing_written()
