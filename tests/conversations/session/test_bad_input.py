"""Bad and extreme input: unserialisable items, corrupt rows, huge and odd items,
cancellation, and a ``store_run_usage`` that must never raise."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from types import SimpleNamespace

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from conversations.models import (
    AgentMessage,
    AgentSession,
    BranchReservation,
    MessageStructure,
    TurnUsage,
)
from tests.support.sdk_harness import (
    Pair,
    assistant,
    function_call,
    function_output,
    pair_factory,
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


pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

ON_SQLITE = connection.vendor == "sqlite"
sqlite_only = pytest.mark.skipif(not ON_SQLITE, reason="jsonb cannot hold invalid JSON")


@sync_to_async
def table_counts(session_id: str = "sess") -> dict[str, int]:
    return {
        model.__name__: model.objects.filter(session_id=session_id).count()
        for model in (AgentSession, AgentMessage, MessageStructure, TurnUsage, BranchReservation)
    }


# ---- Unserialisable items ----------------------------------------------------------------------

UNSERIALISABLE = [
    pytest.param([user(object())], id="object"),
    pytest.param([{"role": "user", "content": {1, 2}}], id="set"),
    pytest.param([user("ok"), {"type": "blob", "data": b"bytes"}], id="bytes-after-good"),
    pytest.param([user("ok"), assistant("fine"), object()], id="bare-object-last"),
    pytest.param([{("tuple", "key"): 1}], id="tuple-key"),
    # Serialisable, but the labelling rules raise on an unhashable ``type``.
    pytest.param([user("ok"), {"type": ["function_call"], "name": "x"}], id="unhashable-type"),
]


@pytest.mark.parametrize("batch", UNSERIALISABLE)
async def test_unserialisable_item_writes_nothing(pair, batch):
    await pair.do("add_items", batch)  # same exception type and message as the SDK
    assert await table_counts() == dict.fromkeys(
        ["AgentSession", "AgentMessage", "MessageStructure", "TurnUsage", "BranchReservation"], 0
    )
    await pair.check_state()


@pytest.mark.parametrize("batch", UNSERIALISABLE)
async def test_unserialisable_item_leaves_history_unchanged(pair, batch):
    await pair.do(
        "add_items", [user("first"), function_call("f", "c1"), function_output("c1", "x")]
    )
    await pair.do("store_run_usage", run_result(usage()))
    await pair.do("create_branch_from_turn", 1, "empty-branch")
    await pair.do("switch_to_branch", "main")
    before = await table_counts()
    await pair.do("add_items", batch)
    assert await table_counts() == before
    await pair.check_state()
    await pair.do("add_items", [user("second")])  # still usable; turn 2
    await pair.check_state()


async def test_circular_item(pair):
    loop: dict = {"role": "user"}
    loop["content"] = loop
    await pair.do("add_items", [loop])
    assert (await table_counts())["AgentMessage"] == 0


# ---- Undecodable stored rows -----------------------------------------------------------------

GARBAGE = ["not json", '{"truncated": ', "", "[1, 2", "{'single': 'quotes'}", "NaNa"]

CORRUPT_SQL = (
    "UPDATE agent_messages SET message_data = ? WHERE id = "
    "(SELECT id FROM agent_messages WHERE session_id = ? ORDER BY id LIMIT 1 OFFSET ?)"
)


def _corrupt_sdk(path, offsets: dict[int, str]) -> None:
    with sqlite3.connect(path) as conn:
        for offset, value in offsets.items():
            conn.execute(CORRUPT_SQL, (value, "sess", offset))


@sync_to_async
def _corrupt_ours(offsets: dict[int, str]) -> None:
    with connection.cursor() as cursor:
        for offset, value in offsets.items():
            cursor.execute(CORRUPT_SQL.replace("?", "%s"), [value, "sess", offset])


async def corrupt(pair, tmp_path, offsets: dict[int, str]) -> None:
    """Overwrite the message rows at these positions (by id) on both sides, via SQL."""
    _corrupt_sdk(tmp_path / "sdk.sqlite3", offsets)
    await _corrupt_ours(offsets)


async def seed_plain(pair) -> None:
    await pair.do("add_items", [assistant("preamble", "p")])
    for n in range(1, 5):
        await pair.do("add_items", [user(f"question {n}"), assistant(f"answer {n}", f"a{n}")])


CORRUPTIONS = [
    pytest.param({0: "not json"}, id="turn-0-item"),
    pytest.param({1: '{"truncated": '}, id="a-user-row"),
    pytest.param({8: ""}, id="newest-item"),
    pytest.param({6: "[1, 2", 7: "{'single': 1}", 8: "NaNa"}, id="newest-three"),
    pytest.param({2: "[1, 2]", 3: '"just a string"'}, id="user-row-not-a-dict"),
    pytest.param({i: GARBAGE[i % len(GARBAGE)] for i in range(9)}, id="everything"),
]


@sqlite_only
@pytest.mark.parametrize("offsets", CORRUPTIONS)
async def test_undecodable_rows_are_skipped_like_the_sdk(pair, tmp_path, offsets):
    await seed_plain(pair)
    await corrupt(pair, tmp_path, offsets)
    decodable = 9 - sum(1 for v in offsets.values() if v not in ("[1, 2]", '"just a string"'))
    assert len(await pair.ours.get_items()) == decodable  # the corruption took
    await pair.check_state()
    for limit in (1, 2, 3, 5, 0, -1):
        await pair.do("get_items", limit)
    for term in ("question", "QUESTION 3", "answer", "truncated"):
        await pair.do("find_turns_by_content", term)
    await pair.do("create_branch_from_content", "question 2", "b")
    await pair.check_state()
    await pair.do("switch_to_branch", "main")
    for _ in range(10):
        await pair.do("pop_item")
        await pair.do("get_items")
    await pair.check_state()


@sqlite_only
async def test_undecodable_rows_on_a_branch(pair, tmp_path):
    await seed_plain(pair)
    await pair.do("create_branch_from_turn", 3, "b")
    await pair.do("add_items", [user("on b"), assistant("b answer", "ab")])
    # Corrupt a shared row (main and b) and a branch-only row.
    await corrupt(pair, tmp_path, {3: "garbage", 9: "more garbage"})
    await pair.check_state()
    for _ in range(8):
        await pair.do("pop_item")
    await pair.check_state()


# ---- Big and odd items -------------------------------------------------------------------------


async def test_one_megabyte_item_round_trips(pair):
    big_text = "0123456789abcdef" * 65_536  # 1 MiB
    big_list = [{"type": "input_text", "text": f"part {i} " + "é" * 1000} for i in range(512)]
    await pair.do("add_items", [user(big_text), assistant(big_text)])
    await pair.do("add_items", [user(big_list)])
    await pair.check_state()
    ours = await pair.ours.get_items()
    assert ours[0]["content"] == big_text
    assert ours[2]["content"] == big_list
    await pair.do("find_turns_by_content", "cdef0123")
    await pair.do("pop_item")
    await pair.do("pop_item")


async def test_huge_batch(pair):
    """One add_items call with more parameters than SQLite's default statement limit
    (32,766 variables) if the items went into a single INSERT."""
    batch = [user("start"), *({"type": "x", "n": n} for n in range(17_000))]
    await pair.do("add_items", batch)
    await pair.do("get_items", 3)
    await pair.do("get_conversation_turns")
    await pair.do("list_branches")
    assert len(await pair.ours.get_items()) == 17_001


ODD_STRINGS = [
    pytest.param("emoji 😀👩‍👩‍👧‍👦🏳️‍🌈", id="emoji-zwj"),
    pytest.param("RTL שלום עולם مرحبا ‮reversed‬", id="rtl"),
    pytest.param("e\u0301 combining, \u200b zero width, \ufeff bom", id="combining"),
    pytest.param("\x01\x1f control \x7f del", id="control"),
    pytest.param("line\u2028separator\u2029para", id="line-separators"),
    pytest.param("\U0010ffff max code point, \ue000 private use", id="planes"),
    pytest.param("quotes ' \" ` and \\ backslashes \\\\ and \\u0041 literal", id="escapes"),
]


@pytest.mark.parametrize("text", ODD_STRINGS)
async def test_odd_unicode_round_trips(pair, text):
    await pair.do("add_items", [user(text), assistant(text), {"type": "x", text: text}])
    await pair.check_state()
    await pair.do("find_turns_by_content", text)
    await pair.do("find_turns_by_content", text[3:9])
    assert (await pair.ours.get_items())[0]["content"] == text


@pytest.mark.skipif(not ON_SQLITE, reason="PostgreSQL: see test_jsonb_refuses_non_json")
async def test_lone_surrogate_round_trips(pair):
    """``json.dumps`` writes lone surrogates as ``\\udXXX`` escapes; ``json.loads`` reads them."""
    text = "lone \ud800 high and \udfff low"
    await pair.do("add_items", [user(text), assistant("ok")])
    await pair.check_state()
    await pair.do("find_turns_by_content", "\ud800")


@pytest.mark.skipif(not ON_SQLITE, reason="PostgreSQL: see test_nul_character_postgresql")
async def test_nul_character_round_trips_on_sqlite(pair):
    text = "nul \u0000 inside"
    await pair.do("add_items", [user(text), {"type": "x", "k\u0000": text}])
    await pair.check_state()
    await pair.do("find_turns_by_content", "\u0000")


@pytest.mark.skipif(ON_SQLITE, reason="PostgreSQL only")
async def test_nul_character_postgresql(pair):
    """jsonb cannot hold U+0000: a clear ValueError, and nothing written."""
    session = pair.ours
    await session.add_items([user("before")])
    before = await table_counts()
    with pytest.raises(ValueError, match="NUL"):
        await session.add_items([user("nul \u0000 inside")])
    assert await table_counts() == before
    assert await session.get_items() == [user("before")]


async def test_special_floats_and_big_numbers(pair):
    item = {"type": "numbers", "big": 2**80, "neg": -(2**70), "f": 1.5e300, "tiny": 5e-324}
    await pair.do("add_items", [user("numbers"), item])
    await pair.check_state()


@pytest.mark.skipif(not ON_SQLITE, reason="PostgreSQL: see test_jsonb_refuses_non_json")
async def test_nan_and_infinity(pair):
    """``json.dumps`` writes NaN/Infinity (not JSON); the SDK stores and reads them back."""
    await pair.do("add_items", [user("inf"), {"type": "numbers", "inf": float("inf")}])
    await pair.check_state()


@pytest.mark.skipif(ON_SQLITE, reason="PostgreSQL only: jsonb holds strict JSON")
@pytest.mark.parametrize(
    "item",
    [
        {"type": "numbers", "inf": float("inf")},
        {"type": "numbers", "nan": float("nan")},
        {"role": "user", "content": "lone \ud800 high"},
    ],
    ids=["infinity", "nan", "lone-surrogate"],
)
async def test_jsonb_refuses_non_json(pair, item):
    """What jsonb cannot hold is a clear ValueError, and the whole batch is not written."""
    session = pair.ours
    await session.add_items([user("before")])
    before = await table_counts()
    with pytest.raises(ValueError, match="jsonb cannot store"):
        await session.add_items([user("next"), item])
    assert await table_counts() == before
    assert await session.get_items() == [user("before")]


# ---- Cancellation ----------------------------------------------------------------------------


@sync_to_async
def consistency(session_id: str = "sess") -> tuple[int, int, list[int], list[int]]:
    messages = AgentMessage.objects.filter(session_id=session_id)
    structure = MessageStructure.objects.filter(session_id=session_id)
    orphans = messages.exclude(id__in=structure.values("message_id")).count()
    dangling = structure.exclude(message_id__in=messages.values("id")).count()
    sequences = list(
        structure.order_by("sequence_number").values_list("sequence_number", flat=True)
    )
    turns = list(structure.order_by("sequence_number").values_list("user_turn_number", flat=True))
    assert sequences == list(range(1, len(sequences) + 1))
    return orphans, dangling, sequences, turns


async def cancel_add_items(session, batch, delay) -> list:
    """Start ``add_items``, cancel its task after ``delay`` (loop yields, or seconds)."""
    task = asyncio.create_task(session.add_items(batch))
    if isinstance(delay, int):
        for _ in range(delay):
            await asyncio.sleep(0)
    else:
        await asyncio.sleep(delay)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return await session.get_items()


@pytest.mark.parametrize("delay", [0, 1, 2, 3, 5, 13, 0.001, 0.005, 0.02])
async def test_cancelled_add_items_is_all_or_nothing(pair, delay):
    """Cancelled before it starts: nothing. Cancelled mid-flight: it lands whole, then the
    caller sees CancelledError (as the SDK). Either way the tables stay consistent."""
    batch = [user("big batch")] + [assistant(f"a{i}", f"id{i}") for i in range(200)]
    kept = [user("kept"), assistant("kept")]
    outcomes = []
    for session in (pair.sdk, pair.ours):
        await session.add_items(kept)
        outcomes.append(await cancel_add_items(session, batch, delay))
    sdk_items, items = outcomes
    assert items in (kept, [*kept, *batch])
    if delay == 0:
        assert items == kept  # never started
    elif isinstance(delay, int):
        assert items == [*kept, *batch]  # started: finishes whole despite the cancel
    assert len(items) == len(sdk_items)
    orphans, dangling, sequences, _turns = await consistency()
    assert (orphans, dangling, len(sequences)) == (0, 0, len(items))
    # Both stay usable, with the same numbering.
    await pair.do("add_items", [user("after")])
    await pair.check_state()
    await pair.do("pop_item")


async def test_cancelled_queued_mutations_keep_their_order(pair):
    """Cancel callers of queued add/pop/store calls: each still lands whole, in call order."""
    for side in (pair.sdk, pair.ours):
        await side.add_items([user("one"), assistant("a1")])
        tasks = [
            asyncio.create_task(side.add_items([user("two"), assistant("a2")])),
            asyncio.create_task(side.store_run_usage(run_result(usage(5)))),
            asyncio.create_task(side.pop_item()),
            asyncio.create_task(side.add_items([assistant("a2 again")])),
        ]
        await asyncio.sleep(0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.05)
    await pair.check_state()


# ---- store_run_usage never raises ----------------------------------------------------------


class Exploding:
    @property
    def context_wrapper(self):
        raise RuntimeError("boom")


class UnserialisableDetails:
    def __init__(self):
        self.cached_tokens = object()


@pytest.mark.parametrize(
    "result",
    [
        pytest.param(Exploding(), id="raising-property"),
        pytest.param(SimpleNamespace(), id="no-context-wrapper"),
        pytest.param(
            SimpleNamespace(
                context_wrapper=SimpleNamespace(
                    usage=SimpleNamespace(
                        requests=1,
                        input_tokens=1,
                        output_tokens=1,
                        total_tokens=2,
                        input_tokens_details=UnserialisableDetails(),
                        output_tokens_details=None,
                    )
                )
            ),
            id="unserialisable-details",
        ),
        pytest.param(run_result(usage(1, 2**63, 1)), id="int64-overflow"),
        pytest.param(run_result(usage(1, 3_000_000_000, 1)), id="beyond-int32"),
        pytest.param(
            SimpleNamespace(context_wrapper=SimpleNamespace(usage=SimpleNamespace())),
            id="empty-usage",
        ),
    ],
)
async def test_store_run_usage_never_raises(pair, result, caplog):
    await pair.do("add_items", [user("q"), assistant("a")])
    with caplog.at_level(logging.DEBUG):
        await pair.do("store_run_usage", result)  # both return None
    await pair.check_state()


async def test_store_run_usage_on_closed_session_does_not_raise(pair):
    await pair.do("add_items", [user("q")])
    pair.ours.close()
    pair.sdk.close()
    await pair.do("store_run_usage", run_result(usage()))
