"""Write test conversations through ``DjangoSession`` (the only writer), synchronously.

``async_to_sync`` runs DjangoSession's thread-sensitive ``sync_to_async`` hops on the calling
thread, so plain ``django_db`` tests (one transaction) see the rows. Under Playwright's sync
API an event loop already runs on the main thread; there (transactional tests only) each call
runs in a short-lived worker thread instead.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import async_to_sync as _async_to_sync
from asgiref.sync import sync_to_async
from django.db import connections

from conversations.session import DjangoSession
from dashboard.demo.model import token_usage


def async_to_sync(function: Any) -> Any:
    def call(*args: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return _async_to_sync(function)(*args)

        async def run() -> Any:
            try:
                return await function(*args)
            finally:
                # The hop's worker thread keeps a connection: close it, or the test
                # database cannot be dropped at the end of the run.
                await sync_to_async(connections.close_all)()

        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, run()).result()

    return call


usage = token_usage


def turn_items(n: int, *, text: str | None = None, tool: bool = False) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [{"role": "user", "content": text or f"question {n}"}]
    if tool:
        items += [
            {
                "type": "function_call",
                "name": "calculator",
                "call_id": f"c{n}",
                "arguments": json.dumps({"expression": f"{n}*2"}),
            },
            {"type": "function_call_output", "call_id": f"c{n}", "output": str(n * 2)},
        ]
    items.append(
        {
            "type": "message",
            "role": "assistant",
            "content": [
                {
                    "type": "output_text",
                    "annotations": [],
                    "text": f"answer **{n}**" + (f" about {text}" if text else ""),
                }
            ],
        }
    )
    return items


class Writer:
    """A tiny synchronous facade over one ``DjangoSession``."""

    def __init__(self, session_id: str) -> None:
        self.session = DjangoSession(session_id=session_id)

    def turn(self, items: list[dict[str, Any]], tokens: tuple[int, int] | None = (100, 20)) -> None:
        async_to_sync(self.session.add_items)(items)
        if tokens is not None:
            async_to_sync(self.session.store_usage)(usage(*tokens))

    def turns(
        self, count: int, *, start: int = 1, tokens: bool = True, tool_every: int = 3
    ) -> None:
        for n in range(start, start + count):
            self.turn(
                turn_items(n, tool=n % tool_every == 0), (100 + n, 20 + n) if tokens else None
            )

    def bulk(self, count: int, *, start: int = 1) -> None:
        """Many turns in one add_items (no usage)."""
        items: list[dict[str, Any]] = []
        for n in range(start, start + count):
            items += turn_items(n)
        async_to_sync(self.session.add_items)(items)

    def branch(self, turn: int, name: str) -> str:
        return async_to_sync(self.session.create_branch_from_turn)(turn, name)

    def switch(self, branch: str) -> None:
        async_to_sync(self.session.switch_to_branch)(branch)


def trip_session(session_id: str = "trip") -> Writer:
    """main: 6 turns; 'tokyo' from turn 3 (+2 turns); 'tokyo/nikko' from tokyo's turn 4 (+1);
    'bigger budget' from main's turn 4 (+2). Turn 5 of main has no usage row."""
    w = Writer(session_id)
    for n in range(1, 7):
        w.turn(turn_items(n, tool=n in (1, 3)), None if n == 5 else (100 * n, 10 * n))
    w.branch(3, "tokyo")
    w.turn(turn_items(3, text="tokyo weather?", tool=True), (1000, 50))
    w.turn(turn_items(4, text="asakusa"), (1100, 60))
    w.branch(4, "tokyo/nikko")
    w.turn(turn_items(4, text="nikko day trip"), (1200, 70))
    w.switch("main")
    w.branch(4, "bigger budget")
    w.turn(turn_items(4, text="budget 900"), (500, 40))
    w.turn(turn_items(5, text="summarise"), (600, 45))
    return w
