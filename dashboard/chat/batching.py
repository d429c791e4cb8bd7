"""``DeltaBatcher``: a turn's protocol messages in order, quick text deltas in fewer frames."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .protocol import DELTA, Message

__all__ = ["DELTA_WINDOW", "DeltaBatcher", "Send"]

#: Text deltas arriving within this many seconds of the last frame share one frame.
DELTA_WINDOW = 0.025

#: Where a batcher sends its messages (a consumer's ``send_json``-like coroutine).
Send = Callable[[Message], Awaitable[None]]

# Flushes scheduled by a timer: referenced until they are done (the loop keeps only weak ones).
_FLUSHES: set[asyncio.Future[None]] = set()


class DeltaBatcher:
    """Sends a turn's events in order, coalescing text deltas that come in quick succession.

    The first delta after a quiet ``window`` goes out at once (time to first token is
    untouched); deltas within the window are joined and sent when it ends, or before the next
    non-delta event. A model that streams faster than the eye reads (or a burst after a slow
    tool) then costs a few frames instead of one per token.
    """

    def __init__(self, send: Send, window: float = DELTA_WINDOW) -> None:
        self._send = send
        self._window = window
        self._pending: list[str] = []
        self._last = float("-inf")
        self._timer: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()

    async def __call__(self, message: Message) -> None:
        loop = asyncio.get_running_loop()
        if message.get("type") != DELTA:
            async with self._lock:
                await self._flush()
                await self._send(message)
            return
        if not self._pending and loop.time() - self._last >= self._window:
            async with self._lock:
                self._last = loop.time()
                await self._send(message)
            return
        self._pending.append(message["text"])
        if self._timer is None:
            delay = max(0.0, self._last + self._window - loop.time())
            self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        task = asyncio.ensure_future(self.flush())
        _FLUSHES.add(task)
        task.add_done_callback(_FLUSHES.discard)

    async def flush(self) -> None:
        """Send what is pending now."""
        async with self._lock:
            await self._flush()

    async def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            text, self._pending = "".join(self._pending), []
            self._last = asyncio.get_running_loop().time()
            await self._send({"type": DELTA, "text": text})
