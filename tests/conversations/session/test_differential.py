"""``DjangoSession`` against the SDK's ``AdvancedSQLiteSession``, operation by operation.

Every test drives a :class:`~tests.support.sdk_harness.Pair`: each call runs on the SDK
session (its own SQLite file, the oracle) and on ``DjangoSession`` (the test database), and
the outcomes (return value, or exception type and message) must be equal. ``check_state``
then compares every reader on every branch.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
import pytest_asyncio
from agents.extensions.memory import AdvancedSQLiteSession
from django.db import connection

from conversations.session import DjangoSession
from tests.support.sdk_harness import (
    OTHER_ITEMS,
    TOOL_ITEMS,
    Both,
    Pair,
    assistant,
    freeze_clock,
    function_call,
    function_output,
    pair_factory,
    reasoning,
    run_result,
    usage,
    user,
)


@pytest.fixture
def make_pair(tmp_path):
    with pair_factory(tmp_path) as make:
        yield make


@pytest.fixture
def pair(make_pair) -> Pair:
    return make_pair()


@pytest.fixture
def frozen_clock(monkeypatch):
    freeze_clock(monkeypatch)


pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def seed(pair: Pair) -> None:
    """Main: turn-0 preamble, then four user turns with tool calls of several kinds."""
    await pair.do(
        "add_items",
        [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": "No emojis.", "type": "message"},
        ],
    )
    await pair.do(
        "add_items",
        [
            user("What's the weather in Paris?"),
            reasoning(),
            function_call("get_weather", "c1", '{"city": "Paris"}'),
            function_output("c1", "sunny"),
            assistant("Sunny in Paris."),
        ],
    )
    await pair.do(
        "add_items",
        [
            user("Search GitHub for django issues"),
            {"type": "mcp_call", "id": "m1", "server_label": "github", "name": "search"},
            {"type": "web_search_call", "id": "ws1", "status": "completed"},
            assistant("Found 3."),
        ],
    )
    await pair.do(
        "add_items",
        [
            user([{"type": "input_text", "text": "Run this code"}]),
            {"type": "code_interpreter_call", "id": "ci1", "code": "1+1"},
            {"type": "shell_call", "id": "sh1", "call_id": "sh1", "action": {}},
            {"type": "shell_call_output", "call_id": "sh1", "output": []},
            function_call("lookup", "c2", namespace="crm"),
            function_output("c2", "{}"),
            assistant("2"),
        ],
    )
    await pair.do("add_items", [user("Thanks!"), assistant("You're welcome.")])


# ---- add_items: classification and turn numbering ------------------------------------------


@pytest.mark.parametrize(
    "batches",
    [
        pytest.param([[user("hi")]], id="one-user"),
        pytest.param(
            [[user("a"), assistant("b"), user("c"), assistant("d"), user("e")]],
            id="3-users-1-batch",
        ),
        pytest.param([[assistant("pre"), reasoning()], [user("then")]], id="turn-0-first"),
        pytest.param([[assistant("x")], [assistant("y"), reasoning()]], id="no-user-ever"),
        pytest.param(
            [[reasoning(), user("a"), user("b")], [assistant("c")], [user("d")]], id="mixed"
        ),
        pytest.param([[user("a")], [], [assistant("b")]], id="empty-batch"),
        pytest.param(
            [[user("typed", type="message")], [user([{"type": "input_text", "text": "list"}])]],
            id="user-shapes",
        ),
        pytest.param(
            [[{"role": "user", "type": "function_call", "name": "role_wins"}, assistant("ok")]],
            id="role-beats-type",
        ),
    ],
)
async def test_add_items_turn_numbering(pair, batches):
    for batch in batches:
        await pair.do("add_items", batch)
        await pair.check_state()


@pytest.mark.parametrize(
    "item", TOOL_ITEMS, ids=lambda i: str(i.get("type")) + str(i.get("name", ""))
)
async def test_add_items_tool_item(pair, item):
    await pair.do("add_items", [user("go"), item, assistant("done")])
    await pair.check_state()


@pytest.mark.parametrize("item", OTHER_ITEMS, ids=repr)
async def test_add_items_other_item(pair, item):
    await pair.do("add_items", [item])
    await pair.do("add_items", [user("u"), item])
    await pair.check_state()


async def test_add_items_every_tool_kind_across_turns(pair):
    await pair.do("add_items", [*OTHER_ITEMS, *TOOL_ITEMS])  # all on turn 0
    await pair.do("add_items", [user("one"), *TOOL_ITEMS, *TOOL_ITEMS])
    await pair.do("add_items", [user("two"), *reversed(TOOL_ITEMS), *OTHER_ITEMS])
    await pair.check_state()


@pytest.mark.parametrize(
    "turn_items",
    [
        pytest.param([{"type": "tool_search_output", "id": "o"}], id="output-alone-counts"),
        pytest.param(
            [{"type": "tool_search_call", "id": "c"}, {"type": "tool_search_output", "id": "o"}],
            id="call-then-output",
        ),
        pytest.param(
            [{"type": "tool_search_output", "id": "o"}, {"type": "tool_search_call", "id": "c"}],
            id="output-then-call",
        ),
        pytest.param([{"type": "tool_search_output"}] * 3, id="three-outputs"),
    ],
)
async def test_tool_usage_tool_search_output_rule(pair, turn_items):
    await pair.do("add_items", [user("1"), *turn_items])
    await pair.do("add_items", [user("2"), {"type": "tool_search_output", "id": "x"}])
    await pair.do("add_items", [user("3"), {"type": "tool_search_call", "id": "y"}])
    await pair.check_state()


async def test_seeded_conversation_state(pair):
    await seed(pair)
    await pair.check_state()
    assert pair.comparisons > 30


# ---- get_items limits ------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [None, 0, 1, 2, 5, 17, 1000, -1, -7])
async def test_get_items_limit(pair, limit):
    await seed(pair)
    await pair.do("get_items", limit)
    await pair.do("get_items", limit=limit, branch_id="main")
    await pair.do("get_items", limit=limit, branch_id="nope")


@pytest.mark.parametrize("settings_limit", [None, 0, 3, -2])
async def test_get_items_session_settings_limit(make_pair, settings_limit):
    pair = make_pair(session_settings={"limit": settings_limit})
    await seed(pair)
    for explicit in (None, 0, 1, 4, -1):
        await pair.do("get_items", explicit)
    await pair.do("create_branch_from_turn", 3, "b")
    for explicit in (None, 0, 1, 4, -1):
        await pair.do("get_items", explicit)
        await pair.do("get_items", explicit, branch_id="main")


# ---- Branching -------------------------------------------------------------------------------


async def test_branch_mid_conversation_and_continue(pair):
    await seed(pair)
    await pair.do("store_run_usage", run_result(usage(1, 100, 20)))
    created = await pair.do("create_branch_from_turn", 3, "alt")
    await pair.check_state()
    await pair.do("add_items", [user("Different question"), assistant("Different answer")])
    await pair.do("store_run_usage", run_result(usage(2, 50, 10)))
    await pair.check_state()
    assert created.ours == "alt"
    # Branch of a branch, with an auto id.
    auto = await pair.do("create_branch_from_turn", 2)
    await pair.check_state()
    await pair.do("add_items", [user("third line"), {"type": "computer_call", "id": "cc"}])
    await pair.check_state()
    await pair.do("switch_to_branch", "main")
    await pair.check_state()
    await pair.do("switch_to_branch", auto)
    await pair.do("switch_to_branch", auto)  # to the current branch: allowed
    await pair.check_state()
    await pair.do("get_items", branch_id=auto)


async def test_branch_from_each_turn(pair):
    await seed(pair)
    for turn in (-1, 0, 1, 2, 3, 4, 5, 99):
        await pair.do("switch_to_branch", "main")
        await pair.do("create_branch_from_turn", turn, f"from-{turn}")
        await pair.check_state()


async def test_branch_from_turn_one_is_ghost_then_add(pair):
    await seed(pair)
    await pair.do("create_branch_from_turn", 1, "ghost")
    await pair.check_state()
    await pair.do("switch_to_branch", "ghost")
    await pair.do("delete_branch", "ghost")
    await pair.do("delete_branch", "ghost", force=True)
    await pair.do("create_branch_from_turn", 1, "ghost-child")
    await pair.do("store_run_usage", run_result(usage()))
    await pair.do("pop_item")
    await pair.do("add_items", [assistant("before any user")])
    await pair.check_state()
    await pair.do("add_items", [user("first on ghost"), assistant("a")])
    await pair.do("store_run_usage", run_result(usage(3)))
    await pair.check_state()
    await pair.do("create_branch_from_turn", 1, "ghost")  # the id stays reserved


async def test_branch_ids_are_reserved(pair):
    await seed(pair)
    for name in ("main", "MAIN", " spaced ", "alt", "alt", "x" * 300, "ünï", "a'b\"c%_\\"):
        await pair.do("switch_to_branch", "main")
        await pair.do("create_branch_from_turn", 2, name)
    await pair.check_state()
    await pair.do("delete_branch", "alt")
    await pair.do("create_branch_from_turn", 2, "alt")  # deleted: still reserved
    await pair.do("clear_session")
    await seed(pair)
    await pair.do("create_branch_from_turn", 2, "ünï")  # cleared: still reserved
    await pair.do("create_branch_from_turn", 2, "fresh")
    await pair.check_state()


@pytest.mark.parametrize("name", ["", " ", "\t\n", None])
async def test_create_branch_blank_name(pair, name):
    await seed(pair)
    await pair.do("create_branch_from_turn", 2, name)
    await pair.do("create_branch_from_turn", 99, name)  # blank name wins over a bad turn
    await pair.check_state()


async def test_auto_branch_ids_suffixes(pair, frozen_clock):
    await seed(pair)
    for _ in range(3):
        await pair.do("switch_to_branch", "main")
        await pair.do("create_branch_from_turn", 2)
    await pair.do("create_branch_from_turn", 2)  # from the last auto branch
    await pair.do("create_branch_from_turn", 3, "branch_from_turn_3_1700000000")
    await pair.do("switch_to_branch", "main")
    await pair.do("create_branch_from_turn", 3)
    await pair.check_state()


async def test_empty_session_branching_errors(pair):
    for call in (
        ("create_branch_from_turn", 1),
        ("create_branch_from_turn", 0, "x"),
        ("create_branch_from_content", "anything"),
        ("create_branch_from_content", "", "y"),
        ("switch_to_branch", "main"),
        ("switch_to_branch", "nope"),
        ("delete_branch", "nope"),
        ("delete_branch", "main"),
        ("delete_branch", "main", True),
        ("list_branches",),
    ):
        await pair.do(*call)
    await pair.check_state()


async def test_create_branch_from_content(pair):
    await seed(pair)
    await pair.do("create_branch_from_content", "no such text")
    await pair.do("create_branch_from_content", "no such text", "  ")  # no match wins
    await pair.do("create_branch_from_content", "paris", "  ")  # match, then blank name
    await pair.do("create_branch_from_content", "You are terse")  # system text: no turn
    await pair.do("create_branch_from_content", "RUN THIS", "from-code")
    await pair.check_state()
    await pair.do("create_branch_from_content", "github")  # searches the current branch
    await pair.do("create_branch_from_content", "")  # matches every turn: the first
    await pair.check_state()
    await pair.do("create_branch_from_content", "weather", "main")


async def test_switch_to_branch_errors(pair):
    await seed(pair)
    await pair.do("create_branch_from_turn", 3, "alt")
    for target in ("nope", "", "MAIN", "alt ", "main", "alt", "alt"):
        await pair.do("switch_to_branch", target)
    await pair.check_state()


async def test_delete_branch_cases(pair):
    await seed(pair)
    await pair.do("create_branch_from_turn", 3, "alt")
    await pair.do("add_items", [user("on alt"), assistant("ok")])
    await pair.do("store_run_usage", run_result(usage(5)))
    await pair.do("create_branch_from_turn", 4, "alt-child")
    await pair.do("switch_to_branch", "alt")
    for args in (
        ("",),
        ("  ",),
        ("main",),
        ("main", True),
        ("alt",),  # current, no force
        ("nope",),
        ("nope", True),
    ):
        await pair.do("delete_branch", *args)
    await pair.do("delete_branch", "alt", force=True)  # switches to main first
    await pair.check_state()
    await pair.do("delete_branch", "alt")  # gone now
    await pair.do("switch_to_branch", "alt")
    await pair.do("delete_branch", "alt-child")  # unaffected by its parent's deletion
    await pair.check_state()


async def test_delete_branch_force_when_main_is_empty(pair):
    await seed(pair)
    await pair.do("create_branch_from_turn", 3, "alt")
    await pair.do("switch_to_branch", "main")
    for _ in range(16):
        await pair.do("pop_item")
    await pair.do("switch_to_branch", "alt")
    await pair.do("delete_branch", "alt", force=True)  # switch_to_branch("main") raises
    await pair.check_state()


# ---- pop_item --------------------------------------------------------------------------------


async def test_pop_item_until_empty(pair):
    await pair.do("pop_item")
    await seed(pair)
    await pair.do("store_run_usage", run_result(usage(1)))
    for _ in range(24):
        await pair.do("pop_item")
        await pair.do("get_conversation_by_turns")
        await pair.do("get_turn_usage")
        await pair.do("list_branches")
    await pair.check_state()
    await pair.do("add_items", [assistant("restart"), user("again")])
    await pair.check_state()


async def test_pop_item_removes_usage_of_emptied_turn_only(pair):
    await seed(pair)
    await pair.do("store_run_usage", run_result(usage(4)))
    await pair.do("pop_item")  # turn 4 keeps its user message: usage stays
    await pair.do("get_turn_usage")
    await pair.do("pop_item")  # turn 4 empty: its usage goes
    await pair.check_state()
    await pair.do("store_run_usage", run_result(usage(3)))  # now lands on turn 3
    await pair.check_state()


async def test_pop_branch_empty_and_shared_messages(pair):
    await seed(pair)
    await pair.do("create_branch_from_turn", 3, "alt")
    for _ in range(12):  # pops copies whose messages main still holds
        await pair.do("pop_item")
        await pair.do("get_items", branch_id="main")
    await pair.check_state()  # alt: empty, current, not listed
    await pair.do("switch_to_branch", "alt")
    await pair.do("delete_branch", "alt", force=True)
    await pair.do("create_branch_from_turn", 1, "other")
    await pair.do("add_items", [user("alt is back")])
    await pair.check_state()
    await pair.do("switch_to_branch", "main")
    for _ in range(3):
        await pair.do("pop_item")
    await pair.check_state()


# ---- clear_session ---------------------------------------------------------------------------


async def test_clear_session(pair):
    await seed(pair)
    await pair.do("store_run_usage", run_result(usage()))
    await pair.do("create_branch_from_turn", 2, "alt")
    await pair.do("add_items", [user("alt line")])
    await pair.do("clear_session")
    await pair.check_state()
    await pair.do("switch_to_branch", "main")
    await pair.do("switch_to_branch", "alt")
    await pair.do("clear_session")  # twice: fine
    await pair.do("add_items", [user("fresh start")])  # on main, turn 1
    await pair.check_state()
    await pair.do("create_branch_from_turn", 1, "alt")  # reserved before the clear
    await pair.do("create_branch_from_turn", 1, "alt2")
    await pair.check_state()


async def test_clear_from_second_instance_sends_first_to_main(make_pair):
    first = make_pair()
    await seed(first)
    await first.do("create_branch_from_turn", 3, "alt")
    second = make_pair()
    await second.do("list_branches")
    await second.do("clear_session")
    await first.check_state()  # back on main (empty)
    await first.do("add_items", [user("after the clear")])
    await second.check_state()
    await first.do("create_branch_from_turn", 1, "alt")  # reserved by the first instance


@pytest.mark.parametrize(
    "then",
    [
        ("add_items", [assistant("where do I land?")]),
        ("pop_item",),
        ("store_run_usage", None),
        ("create_branch_from_turn", 1, "nb"),
        ("get_items",),
        ("delete_branch", "alt", True),
    ],
    ids=lambda c: c[0],
)
async def test_external_clear_then_operation(make_pair, then):
    first = make_pair()
    await seed(first)
    await first.do("create_branch_from_turn", 3, "alt")
    second = make_pair()
    await second.do("add_items", [user("second instance on main")])
    await second.do("clear_session")
    await second.do("add_items", [user("main again"), assistant("ok")])
    args = then[1:] if then[0] != "store_run_usage" else (run_result(usage(9)),)
    await first.do(then[0], *args)
    await first.check_state()
    await second.check_state()


async def test_two_instances_see_each_others_writes(make_pair):
    first, second = make_pair(), make_pair()
    await first.do("add_items", [user("from first")])
    await second.do("add_items", [assistant("from second")])
    await second.do("create_branch_from_turn", 1, "b")
    await first.do("add_items", [user("first again")])
    await second.do("add_items", [user("second on b")])
    await first.check_state()
    await second.check_state()
    await first.do("switch_to_branch", "b")
    await first.do("pop_item")
    await second.check_state()


async def test_branch_deleted_by_other_instance(make_pair):
    """The first instance's current branch becomes a ghost; its next append recreates it."""
    first, second = make_pair(), make_pair()
    await seed(first)
    await first.do("create_branch_from_turn", 3, "alt")
    await first.do("add_items", [user("alt turn")])
    await second.do("delete_branch", "alt")
    await first.check_state()
    await first.do("store_run_usage", run_result(usage()))  # no rows: dropped
    await first.do("add_items", [assistant("recreated"), user("alt again")])
    await first.check_state()
    await second.do("create_branch_from_turn", 2, "alt")  # still reserved


async def test_concurrent_calls_land_in_call_order(pair):
    """Appends, pops and a queued append across a switch land as called (spec 3.12)."""
    await seed(pair)
    await pair.do("create_branch_from_turn", 3, "alt")
    await pair.do("switch_to_branch", "main")
    for side in (pair.sdk, pair.ours):
        await asyncio.gather(
            side.add_items([user("c1")]),
            side.add_items([assistant("c2"), user("c3")]),
            side.pop_item(),
            side.add_items([assistant("c4")]),
            side.store_run_usage(run_result(usage(6))),
            side.add_items([user("c5")]),
        )
        # Queued before the switch runs: the append still targets main.
        await asyncio.gather(side.add_items([assistant("to main")]), side.switch_to_branch("alt"))
        await side.add_items([user("to alt")])
    await pair.check_state()


@pytest.mark.parametrize(
    "call",
    [
        ("get_items", None, ""),
        ("get_conversation_turns", ""),
        ("get_conversation_by_turns", ""),
        ("get_tool_usage", ""),
        ("get_turn_usage", None, ""),
        ("get_turn_usage", 1, ""),
        ("switch_to_branch", None),
        ("switch_to_branch", ""),
        ("delete_branch", None),
        ("create_branch_from_turn", True, "from-true"),
        ("create_branch_from_turn", 2.0, "from-float"),
        ("create_branch_from_turn", 2.5, "from-half"),
        ("create_branch_from_turn", "2", "from-str"),
        ("create_branch_from_turn", 2, 5),
        ("find_turns_by_content", None),
        ("find_turns_by_content", 5),
        ("add_items", ("tuple", "of", "items")),
        ("add_items", "<generator>"),
    ],
    ids=lambda c: f"{c[0]}{c[1:]!r}"[:60],
)
async def test_odd_arguments(pair, call):
    """Arguments outside the annotated types: same value, or same exception type."""
    await seed(pair)
    method, *args = call
    if args == ["<generator>"]:
        # A generator is consumed by the first side: give each side its own.
        await pair.do(method, Both(items_generator(), items_generator()))
    else:
        await pair.do(method, *args)
    await pair.check_state()


def items_generator():
    return (x for x in [user("from a generator")])


# ---- Search and previews ---------------------------------------------------------------------

SEARCH_CONTENTS = [
    "Café au lait",
    "CAFÉ NOIR",
    "100% sure",
    "snake_case and camelCase",
    "C:\\temp\\file",
    'it\'s "quoted"',
    "line one\nline two\ttab",
    "emoji 😀 here",
    "שלום RTL עברית",
    [{"type": "input_text", "text": "first part"}, {"type": "input_text", "text": "Second PART"}],
    [{"type": "input_image", "image_url": "https://example.com/cat.png"}],
    [{"type": "input_text", "text": "abc"}, {"type": "input_text", "text": "def"}],
    [{"type": "input_file", "file_id": "file-1"}, {"type": "input_text", "text": "with file"}],
    "x" * 150,
    "y" * 100,
    "z" * 101,
    [{"type": "input_text", "text": "ü" * 120}],
    "",
    "u00e9 literally",
    "role content type",
]

SEARCH_TERMS = [
    "",
    "café",
    "CAFÉ",
    "Café",
    "cafÉ",
    "CAFE",
    "%",
    "100%",
    "_",
    "e_c",
    "\\",
    "C:\\temp",
    "'",
    '"quoted"',
    "\n",
    "😀",
    "RTL",
    "שלום",
    "PART",
    "part",
    "abcdef",
    "cdef",
    "input_text",
    "input_image",
    "example.com",
    "cat.png",
    "file-1",
    "with",
    "xxxxx",
    "u00e9",
    "\\u00e9",
    "é",
    "role",
    "content",
    "Ü",
    "ü",
    "nowhere",
]


@pytest_asyncio.fixture
async def search_pair(pair) -> Pair:
    for content in SEARCH_CONTENTS:
        await pair.do("add_items", [user(content), assistant("ok")])
    return pair


async def test_search_session_state(search_pair):
    await search_pair.check_state()


async def test_find_turns_by_content(search_pair):
    for term in SEARCH_TERMS:
        await search_pair.do("find_turns_by_content", term)
        await search_pair.do("find_turns_by_content", term, branch_id="main")
        await search_pair.do("find_turns_by_content", term.upper())
    await search_pair.do("find_turns_by_content", "nope", branch_id="nope")
    await search_pair.do("create_branch_from_content", "CAFÉ")  # the first match: turn 2
    await search_pair.do("find_turns_by_content", "café")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(None, id="content-None"),
        pytest.param(5, id="content-int"),
        pytest.param(["plain", "strings"], id="list-of-str"),
        pytest.param([{"type": "input_text", "text": None}], id="part-text-None"),
        pytest.param([{"type": "input_text", "text": 7}], id="part-text-int"),
        pytest.param([{"type": "input_text"}], id="part-without-text"),
        pytest.param({"text": "a dict"}, id="content-dict"),
        pytest.param(..., id="content-missing"),
    ],
)
async def test_odd_user_content(pair, content):
    item = {"role": "user"} if content is ... else user(content)
    await pair.do("add_items", [user("normal text"), item, assistant("ok")])
    await pair.do("get_conversation_turns")
    for term in ("", "a", "normal", "text", "7", "None", "null"):
        await pair.do("find_turns_by_content", term)
    await pair.check_state()


@pytest.mark.skipif(
    connection.vendor != "sqlite",
    reason="PostgreSQL's jsonb keeps values, not key order (docs/storage.md, difference 3); "
    "test_jsonb_key_order_is_the_only_difference checks what it keeps",
)
async def test_list_content_preview_key_order(pair):
    """Previews of list content are ``json.dumps`` of the parts as written (key order kept)."""
    parts = [{"type": "input_text", "text": "zeta first", "annotations": []}]
    await pair.do("add_items", [user(parts), user([{"type": "input_text", "text": "é" * 99}])])
    sdk_turns = await pair.sdk.get_conversation_turns()
    our_turns = await pair.ours.get_conversation_turns()
    assert [t["content"] for t in our_turns] == [t["content"] for t in sdk_turns]
    sdk_found = await pair.sdk.find_turns_by_content("zeta")
    our_found = await pair.ours.find_turns_by_content("zeta")
    assert [t["content"] for t in our_found] == [t["content"] for t in sdk_found]


@pytest.mark.skipif(
    connection.vendor != "sqlite",
    reason="PostgreSQL's jsonb keeps values, not key order (docs/storage.md, difference 3); "
    "test_jsonb_key_order_is_the_only_difference checks what it keeps",
)
async def test_get_items_keeps_key_order(pair):
    """Items come back with their keys in the order they were written."""
    items = [
        {"type": "function_call", "name": "f", "call_id": "c", "arguments": "{}"},
        {"z": 1, "a": 2, "m": {"y": 1, "b": 2}},
        user([{"type": "input_text", "text": "t"}]),
    ]
    await pair.do("add_items", items)
    sdk_items = await pair.sdk.get_items()
    our_items = await pair.ours.get_items()
    assert [list(i) for i in our_items] == [list(i) for i in sdk_items] == [list(i) for i in items]
    assert json.dumps(our_items) == json.dumps(sdk_items)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL jsonb only")
async def test_jsonb_key_order_is_the_only_difference(pair):
    """On jsonb, items and list previews equal the SDK's once key order is set aside."""
    parts = [{"type": "input_text", "text": "zeta first", "annotations": []}]
    items = [
        {"type": "function_call", "name": "f", "call_id": "c", "arguments": "{}"},
        {"z": 1, "a": 2, "m": {"y": 1, "b": 2}},
        user(parts),
    ]
    await pair.do("add_items", items)
    assert await pair.ours.get_items() == await pair.sdk.get_items() == items
    ours = await pair.ours.get_conversation_turns()
    sdk = await pair.sdk.get_conversation_turns()
    assert [json.loads(t["content"]) for t in ours] == [json.loads(t["content"]) for t in sdk]
    assert [t["content"] for t in ours] != [t["content"] for t in sdk]  # keys reordered


# ---- Usage -----------------------------------------------------------------------------------


async def test_store_run_usage_replaces(pair):
    await pair.do("add_items", [user("q"), assistant("a")])
    await pair.do("store_run_usage", run_result(usage(1, 10, 5)))
    await pair.do("store_run_usage", run_result(usage(2, 7, 3, cached=0, reasoning_tokens=0)))
    await pair.check_state()
    await pair.do("add_items", [user("q2")])
    await pair.do("store_run_usage", run_result(usage(3, 1, 1, total=999)))
    await pair.check_state()


async def test_store_run_usage_on_turn_zero_and_empty(pair):
    await pair.do("store_run_usage", run_result(usage()))  # no rows: nothing stored
    await pair.do("get_session_usage")
    await pair.do("add_items", [assistant("preamble")])
    await pair.do("store_run_usage", run_result(usage(4)))  # turn 0
    await pair.check_state()
    await pair.do("add_items", [user("q")])
    await pair.do("store_run_usage", run_result(usage(5)))
    await pair.check_state()
    await pair.do("pop_item")  # turn 1 empty: its usage goes; turn 0 stays
    await pair.check_state()


async def test_store_run_usage_after_branching_lands_on_previous_turn(pair):
    await seed(pair)
    await pair.do("store_run_usage", run_result(usage(1, 1, 1)))
    await pair.do("create_branch_from_turn", 3, "alt")  # usage is not copied
    await pair.check_state()
    await pair.do("store_run_usage", run_result(usage(2, 2, 2)))  # turn 2 on alt
    await pair.check_state()
    await pair.do("create_branch_from_turn", 1, "ghost")
    await pair.do("store_run_usage", run_result(usage(3, 3, 3)))  # no rows: dropped
    await pair.check_state()


async def test_store_run_usage_after_pop_of_its_turn(pair):
    await seed(pair)
    # Queued in call order: the capture sees turn 4, the pops then empty it.
    await asyncio.gather(
        pair.sdk.store_run_usage(run_result(usage(7))),
        pair.sdk.pop_item(),
        pair.sdk.pop_item(),
    )
    await asyncio.gather(
        pair.ours.store_run_usage(run_result(usage(7))),
        pair.ours.pop_item(),
        pair.ours.pop_item(),
    )
    await pair.check_state()
    # Capture before an append: usage belongs to the old turn.
    await asyncio.gather(
        pair.sdk.store_run_usage(run_result(usage(8))), pair.sdk.add_items([user("next")])
    )
    await asyncio.gather(
        pair.ours.store_run_usage(run_result(usage(8))), pair.ours.add_items([user("next")])
    )
    await pair.check_state()


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(None, id="None"),
        pytest.param(object(), id="object"),
        pytest.param(SimpleNamespace(context_wrapper=None), id="no-wrapper"),
        pytest.param(run_result(None), id="usage-None"),
        pytest.param(SimpleNamespace(context_wrapper=SimpleNamespace(usage="x")), id="usage-str"),
        pytest.param(
            SimpleNamespace(context_wrapper=SimpleNamespace(usage=SimpleNamespace(requests=1))),
            id="usage-partial",
        ),
    ],
)
async def test_store_run_usage_swallows_errors(pair, bad):
    await pair.do("add_items", [user("q")])
    await pair.do("store_run_usage", bad)
    await pair.check_state()


async def test_usage_readers_across_branches(pair):
    await seed(pair)
    await pair.do("store_run_usage", run_result(usage(1, 10, 1)))
    await pair.do("create_branch_from_turn", 4, "alt")
    await pair.do("store_run_usage", run_result(usage(2, 20, 2)))
    await pair.do("add_items", [user("alt 4")])
    await pair.do("store_run_usage", run_result(usage(3, 30, 3)))
    for branch in (None, "", "main", "alt", "nope"):
        await pair.do("get_session_usage", branch)
        await pair.do("get_turn_usage", branch_id=branch)
        for turn in (0, 1, 3, 4, 5):
            await pair.do("get_turn_usage", turn, branch)
    await pair.do("switch_to_branch", "main")
    await pair.do("get_turn_usage")
    await pair.do("delete_branch", "alt")  # takes its usage with it
    await pair.check_state()


# ---- Closed sessions and the constructor -----------------------------------------------------

CLOSED_CALLS = [
    ("get_items",),
    ("get_items", 3),
    ("add_items", []),
    ("add_items", [user("x")]),
    ("pop_item",),
    ("clear_session",),
    ("store_run_usage", "RESULT"),
    ("get_session_usage",),
    ("get_session_usage", "main"),
    ("get_turn_usage",),
    ("get_turn_usage", 1),
    ("create_branch_from_turn", 1),
    ("create_branch_from_turn", 1, " "),
    ("create_branch_from_content", "hello"),
    ("switch_to_branch", "main"),
    ("delete_branch", "alt"),
    ("delete_branch", "main"),
    ("delete_branch", ""),
    ("delete_branch", "current", True),
    ("list_branches",),
    ("get_conversation_turns",),
    ("find_turns_by_content", "hello"),
    ("get_conversation_by_turns",),
    ("get_tool_usage",),
]


@pytest.mark.parametrize("call", CLOSED_CALLS, ids=lambda c: "-".join(map(str, c)))
async def test_closed_session(pair, call):
    await pair.do("add_items", [user("hello")])
    await pair.do("create_branch_from_turn", 1, "current")
    await pair.do("add_items", [user("hello again")])
    pair.sdk.close()
    pair.ours.close()
    args = [run_result(usage()) if a == "RESULT" else a for a in call[1:]]
    await pair.do(call[0], *args)


@pytest.mark.parametrize(
    "args, kwargs",
    [
        (("sess",), {}),
        (("sess", "other"), {}),
    ],
)
async def test_constructor_positional_arguments(tmp_path, args, kwargs):
    with pytest.raises(TypeError):
        AdvancedSQLiteSession(*args, db_path=tmp_path / "x.sqlite3", create_tables=True, **kwargs)
    with pytest.raises(TypeError):
        DjangoSession(*args, **kwargs)


async def test_session_settings_coercion(make_pair):
    pair = make_pair(session_settings={"limit": 2})
    assert pair.ours.session_settings == pair.sdk.session_settings
    assert make_pair("s2").ours.session_settings == make_pair("s2").sdk.session_settings
