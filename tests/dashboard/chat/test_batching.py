"""``DeltaBatcher``: a turn's events in order, quick text deltas joined into fewer frames."""

from __future__ import annotations

import asyncio

import pytest

from dashboard.chat.batching import DeltaBatcher

pytestmark = pytest.mark.asyncio

WINDOW = 0.05


def delta(text: str) -> dict[str, str]:
    return {"type": "delta", "text": text}


@pytest.fixture
def sent() -> list[dict]:
    return []


@pytest.fixture
def batcher(sent) -> DeltaBatcher:
    async def send(message: dict) -> None:
        sent.append(message)

    return DeltaBatcher(send, window=WINDOW)


async def test_first_delta_goes_out_at_once_and_a_burst_is_joined(batcher, sent):
    for token in ("Hel", "lo", ",", " world"):
        await batcher(delta(token))
    assert sent == [delta("Hel")]  # time to first token untouched; the rest waits
    await batcher({"type": "tool_call", "call_id": "c1", "name": "f", "arguments": "{}"})
    assert sent == [
        delta("Hel"),
        delta("lo, world"),  # flushed before the next event: order kept
        {"type": "tool_call", "call_id": "c1", "name": "f", "arguments": "{}"},
    ]


async def test_pending_text_is_sent_when_the_window_ends(batcher, sent):
    await batcher(delta("a"))
    await batcher(delta("b"))
    await batcher(delta("c"))
    assert sent == [delta("a")]
    await asyncio.sleep(WINDOW * 3)
    assert sent == [delta("a"), delta("bc")]


async def test_slow_deltas_each_get_their_own_frame(batcher, sent):
    for token in ("one", " two", " three"):
        await batcher(delta(token))
        await asyncio.sleep(WINDOW * 1.5)
    assert sent == [delta("one"), delta(" two"), delta(" three")]


async def test_turn_complete_after_a_burst_carries_every_token_before_it(batcher, sent):
    tokens = [f"t{n} " for n in range(50)]
    for token in tokens:
        await batcher(delta(token))
    await batcher({"type": "turn_complete", "turn": 1})
    assert sent[-1] == {"type": "turn_complete", "turn": 1}
    assert "".join(m["text"] for m in sent[:-1]) == "".join(tokens)
    assert len(sent) == 3  # first token, the rest, the completion
    await asyncio.sleep(WINDOW * 2)  # the cancelled timer sends nothing more
    assert len(sent) == 3
