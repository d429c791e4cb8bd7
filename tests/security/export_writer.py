"""A writer process for the export-snapshot tests: whole turns (items, then their usage).

Run as ``python -m tests.security.export_writer MODE SESSION_ID [TURNS]`` with
``DATABASE_URL`` pointing at the test database. It sets Django up, opens its connection,
prints ``ready`` and waits for a line on stdin, then:

- ``loop``: writes ``TURNS`` turns to ``main`` as fast as a real agent would (a 4-item turn:
  user, function_call, function_call_output, assistant; then the turn's usage in its own
  transaction, as ``store_run_usage`` does after the run). Every 5th turn it branches from
  turn 1 and writes a turn on the new branch too. Prints ``done`` at the end.
- ``step``: writes one such turn (with usage) for every further line read on stdin and
  answers ``done`` after each; stops at end of input or ``quit``.

Exits non-zero on any error (the traceback goes to stderr).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any


def turn_items(turn: int, branch: str = "main") -> list[dict[str, Any]]:
    call_id = f"call_{branch}_{turn}"
    return [
        {"role": "user", "content": f"question {turn} on {branch}"},
        {"type": "function_call", "name": "lookup", "call_id": call_id, "arguments": "{}"},
        {"type": "function_call_output", "call_id": call_id, "output": f"answer {turn}"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": f"done {turn}", "annotations": []}],
        },
    ]


async def write_turn(session: Any, turn: int, branch: str = "main") -> None:
    from agents.usage import Usage

    await session.add_items(turn_items(turn, branch))
    await session.store_usage(
        Usage(requests=1, input_tokens=10 + turn, output_tokens=5, total_tokens=15 + turn)
    )


async def loop(session_id: str, turns: int) -> None:
    from conversations.session import DjangoSession

    session = DjangoSession(session_id=session_id)
    for turn in range(1, turns + 1):
        await asyncio.sleep(0.001)
        await write_turn(session, turn)
        if turn % 5 == 0:
            branch = DjangoSession(session_id=session_id)
            name = await branch.create_branch_from_turn(1)
            await write_turn(branch, turn, name)


async def step(session_id: str) -> None:
    from conversations.session import DjangoSession

    session = DjangoSession(session_id=session_id)
    turn = 0
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        turn += 1
        await write_turn(session, 1000 + turn)
        print("done", flush=True)


def main() -> None:
    mode, session_id = sys.argv[1], sys.argv[2]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    from django.db import connection

    connection.ensure_connection()
    print("ready", flush=True)
    sys.stdin.readline()  # the start barrier
    if mode == "loop":
        asyncio.run(loop(session_id, int(sys.argv[3])))
        print("done", flush=True)
    else:
        asyncio.run(step(session_id))


if __name__ == "__main__":
    main()
