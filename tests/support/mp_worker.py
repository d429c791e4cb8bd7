"""One writer process for the multi-process session tests.

Run as ``python -m tests.support.mp_worker WORKER BATCHES SESSION_ID`` with
``DATABASE_URL`` pointing at the test database. The worker sets Django up, opens its
connection, prints ``ready`` and waits for a line on stdin (a start barrier, so all writers
start together), then writes ``BATCHES`` batches to ``main`` and, now and then, branches.
It prints one JSON line with what it did, and exits non-zero on any unexpected error.

Batches cycle through four kinds (every item carries a ``mark`` "w<worker>-b<batch>-p<pos>-n<size>"
so the parent can check that each batch landed whole and contiguous):

- ``i % 4 == 0`` and ``== 2``: a 4-item turn (user, function_call, function_call_output,
  assistant);
- ``i % 4 == 1``: a 1-item user message (a turn of its own);
- ``i % 4 == 3``: a 1-item assistant message (joins the current turn).

Every 10th batch (``i % 10 == 5``) a fresh instance branches from a turn this worker knows
exists (auto-generated id, so several processes race for ``_2``/``_3`` suffixes), and halfway
through every worker races for the same named branch ``contested``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

CONTESTED = "contested"


def batch_items(worker: int, batch: int) -> list[dict[str, Any]]:
    kind = batch % 4
    if kind in (0, 2):
        call_id = f"call_w{worker}_b{batch}"
        items: list[dict[str, Any]] = [
            {"role": "user", "content": f"worker {worker} asks {batch}"},
            {"type": "function_call", "name": "lookup", "call_id": call_id, "arguments": "{}"},
            {"type": "function_call_output", "call_id": call_id, "output": "42"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "done", "annotations": []}],
            },
        ]
    elif kind == 1:
        items = [{"role": "user", "content": f"worker {worker} says {batch}"}]
    else:
        items = [{"role": "assistant", "content": f"worker {worker} adds {batch}"}]
    for pos, item in enumerate(items):
        item["mark"] = f"w{worker}-b{batch}-p{pos}-n{len(items)}"
    return items


async def run(worker: int, batches: int, session_id: str) -> dict[str, Any]:
    from conversations.session import DjangoSession

    session = DjangoSession(session_id=session_id)
    own_user_messages = 0
    branches: list[dict[str, Any]] = []
    contested = None
    for batch in range(batches):
        items = batch_items(worker, batch)
        # A breath between batches, as a real agent takes: SQLite's busy handler polls with
        # backoff, so a writer looping with no gap can finish before a waiter's next poll.
        await asyncio.sleep(0.01)  # longer than a write (the triggers of 0006 lengthen it)
        await session.add_items(items)
        own_user_messages += sum(1 for item in items if item.get("role") == "user")
        if batch % 10 == 5 and own_user_messages >= 2:
            # At least this many user turns are committed on main (ours alone).
            turn = own_user_messages
            brancher = DjangoSession(session_id=session_id)
            branch_id = await brancher.create_branch_from_turn(turn)
            branches.append({"branch_id": branch_id, "turn": turn})
        if batch == batches // 2:
            try:
                await DjangoSession(session_id=session_id).create_branch_from_turn(2, CONTESTED)
                contested = "won"
                branches.append({"branch_id": CONTESTED, "turn": 2})
            except ValueError as exc:
                contested = f"ValueError: {exc}"
    return {"worker": worker, "branches": branches, "contested": contested}


def main() -> None:
    worker, batches, session_id = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    from django.db import connection

    connection.ensure_connection()
    print("ready", flush=True)
    sys.stdin.readline()  # the start barrier
    result = asyncio.run(run(worker, batches, session_id))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
