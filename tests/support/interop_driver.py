"""Run a script of session operations on one backend and print the results as JSON.

Used by the interop tests: ``DjangoSession`` is bound to Django's configured database, so the
Django side runs in a child process whose ``DATABASE_URL`` names the SQLite file under test::

    DATABASE_URL=sqlite:////tmp/x.sqlite3 python -m tests.support.interop_driver < script.json

A script is ``{"backend": "django" | "sdk", "db_path": ..., "create_tables": bool,
"ops": [[session_id, method, args, kwargs], ...]}``. One instance per ``session_id`` is kept
for the whole script (the current branch is per-instance state, as in the SDK); the method
``"reopen"`` drops it so the next op gets a fresh instance on ``main``. ``"store_run_usage"``
takes the usage numbers as kwargs; ``"snapshot"`` returns every observable read of the
session (see :func:`snapshot`). Results are JSON-normalised the same way for both backends,
so the parent can compare them with ``==``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from types import SimpleNamespace
from typing import Any


def usage_result(
    *,
    requests: int = 1,
    input_tokens: int = 0,
    output_tokens: int = 0,
    total_tokens: int = 0,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> SimpleNamespace:
    """Something shaped like a ``RunResult`` for ``store_run_usage``."""
    from agents.usage import Usage
    from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

    usage = Usage(
        requests=requests,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=total_tokens,
        input_tokens_details=InputTokensDetails(cached_tokens=cached_tokens, cache_write_tokens=0),
        output_tokens_details=OutputTokensDetails(reasoning_tokens=reasoning_tokens),
    )
    return SimpleNamespace(context_wrapper=SimpleNamespace(usage=usage))


async def snapshot(session: Any) -> dict[str, Any]:
    """Every read the SDK's API offers, for every branch of the session."""
    branches = await session.list_branches()
    per_branch = {}
    for branch in sorted(b["branch_id"] for b in branches):
        by_turns = await session.get_conversation_by_turns(branch)
        per_branch[branch] = {
            "items": await session.get_items(branch_id=branch),
            "last3": await session.get_items(limit=3, branch_id=branch),
            "by_turns": [[turn, rows] for turn, rows in by_turns.items()],
            "turns": await session.get_conversation_turns(branch),
            "turn_usage": await session.get_turn_usage(branch_id=branch),
            "turn_usage_1": await session.get_turn_usage(1, branch_id=branch),
            "tool_usage": [list(t) for t in await session.get_tool_usage(branch)],
            "session_usage": await session.get_session_usage(branch),
        }
    return {
        # Tie order within one second is a SQLite artefact (spec 3.8): compare as a set,
        # and check the created_at order separately.
        "branches": sorted(branches, key=lambda b: b["branch_id"]),
        "branch_order_ok": [b["created_at"] for b in branches]
        == sorted(b["created_at"] for b in branches),
        "per_branch": per_branch,
        "current_items": await session.get_items(),
        "current_turn_usage": await session.get_turn_usage(),
        "session_usage": await session.get_session_usage(),
    }


def without_timestamps(value: Any) -> Any:
    """A copy of a result with ``created_at`` / ``timestamp`` keys removed (any depth)."""
    if isinstance(value, dict):
        return {
            k: without_timestamps(v)
            for k, v in value.items()
            if k not in {"created_at", "timestamp"}
        }
    if isinstance(value, list):
        return [without_timestamps(v) for v in value]
    return value


def _open(backend: str, session_id: str, script: dict[str, Any]) -> Any:
    if backend == "django":
        from conversations.session import DjangoSession

        return DjangoSession(session_id=session_id)
    from agents.extensions.memory import AdvancedSQLiteSession

    return AdvancedSQLiteSession(
        session_id=session_id,
        db_path=script["db_path"],
        create_tables=script.get("create_tables", False),
    )


async def run_script(script: dict[str, Any]) -> list[Any]:
    """Run the ops in order; return one JSON-normalised result (or error) per op."""
    backend = script["backend"]
    sessions: dict[str, Any] = {}
    results: list[Any] = []
    try:
        for op in script["ops"]:
            session_id, method = op[0], op[1]
            args = op[2] if len(op) > 2 else []
            kwargs = op[3] if len(op) > 3 else {}
            if method == "reopen":
                old = sessions.pop(session_id, None)
                if old is not None:
                    old.close()
                results.append(None)
                continue
            if session_id not in sessions:
                sessions[session_id] = _open(backend, session_id, script)
            session = sessions[session_id]
            try:
                if method == "store_run_usage":
                    result = await session.store_run_usage(usage_result(**kwargs))
                elif method == "snapshot":
                    result = await snapshot(session)
                else:
                    result = await getattr(session, method)(*args, **kwargs)
            except Exception as exc:  # recorded: error behaviour is compared too
                result = {"error": type(exc).__name__, "message": str(exc)}
            if isinstance(result, tuple):
                result = list(result)
            if method == "get_conversation_by_turns" and isinstance(result, dict):
                result = [[turn, rows] for turn, rows in result.items()]
            results.append(result)
    finally:
        for session in sessions.values():
            session.close()
    # The same JSON round trip for both backends (tuples -> lists, int keys kept as lists).
    return json.loads(json.dumps(results))


def main() -> None:
    script = json.load(sys.stdin)
    if script["backend"] == "django":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
        import django

        django.setup()
    results = asyncio.run(run_script(script))
    sys.stdout.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
