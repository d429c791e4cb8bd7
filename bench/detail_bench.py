"""Benchmark: server time of the session detail page at 500 and 8,000 turns.

Run from the repository root::

    .venv/bin/python bench/detail_bench.py                      # SQLite scratch file
    .venv/bin/python bench/detail_bench.py --quick              # 100 / 800 turns, smoke run
    .venv/bin/python bench/detail_bench.py --postgres postgres://u:p@127.0.0.1:5432/db

Each data set is one session written through ``DjangoSession`` (user, function_call,
function_call_output, assistant per turn; usage stored on every turn) with two branches forked
at 50% and 90% of its turns, plus the same number of turns spread over 8 other sessions written
afterwards. The page is requested in-process through Django's test ``Client`` (logged-in
reviewer; middleware, auth, selectors, templates: everything but the network), on the branch
forked at 90% (so the tree, the switchers and the shared-prefix usage owners all matter).

Both data sets are built first; then the two pages are requested alternately, so a change in
the machine's speed during the run hits both sizes alike.

Target: ratio (8,000 / 500 turns) of median server time <= 1.5, and the same query count.
The bench creates its own scratch database (a SQLite file in a temp folder, or a scratch
database on the PostgreSQL server, dropped at the end) and never touches the configured one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from agents import TResponseInputItem

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
import tests.support.environment  # noqa: E402, F401  (the tests' key and plain-HTTP settings)


def _configure(args: argparse.Namespace) -> str | None:
    """Point Django at a scratch database before it is set up; return a PG db to drop."""
    if args.postgres:
        import psycopg

        parts = urlsplit(args.postgres)
        name = f"forkview_detail_bench_{os.getpid()}"
        admin = psycopg.connect(args.postgres, autocommit=True)
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
        admin.close()
        os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
        return name
    if args.sqlite:
        os.environ["DATABASE_URL"] = f"sqlite:///{Path(args.sqlite).resolve()}"
        return None
    folder = tempfile.mkdtemp(prefix="forkview-detail-bench-")
    os.environ["DATABASE_URL"] = f"sqlite:///{folder}/bench.sqlite3"
    return None


def _turn(n: int, label: str) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": f"{label} question {n}: what about order L-{n:05d}?"},
        {
            "type": "function_call",
            "name": "lookup_order",
            "call_id": f"c{n}",
            "arguments": json.dumps({"order_id": f"L-{n:05d}"}),
        },
        {
            "type": "function_call_output",
            "call_id": f"c{n}",
            "output": json.dumps({"order_id": f"L-{n:05d}", "status": "shipped"}),
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [
                {
                    "type": "output_text",
                    "annotations": [],
                    "text": f"Order **L-{n:05d}** has *shipped*; see the tracking page.",
                }
            ],
        },
    ]


async def _write(session_id: str, turns: int, *, branches: bool) -> None:
    from agents.usage import Usage
    from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

    from conversations.session import DjangoSession

    session = DjangoSession(session_id=session_id)

    async def add(first: int, last: int, label: str) -> None:
        for n in range(first, last + 1):
            await session.add_items(cast("list[TResponseInputItem]", _turn(n, label)))
            usage = Usage(
                requests=2,
                input_tokens=300 + 20 * n,
                output_tokens=80 + n % 50,
                total_tokens=380 + 20 * n + n % 50,
                input_tokens_details=InputTokensDetails(cached_tokens=150, cache_write_tokens=0),
                output_tokens_details=OutputTokensDetails(reasoning_tokens=n % 7),
            )
            await session.store_usage(usage)

    await add(1, turns, "main")
    if branches:
        await session.create_branch_from_turn(turns // 2, "half")
        await add(turns // 2, turns // 2 + 5, "half")
        await session.switch_to_branch("main")
        fork = turns * 9 // 10
        await session.create_branch_from_turn(fork, "late fork")
        await add(fork, turns, "late")


def _build(turns: int) -> str:
    from conversations.models import AgentSession

    session_id = f"bench/detail {turns}"
    if AgentSession.objects.filter(session_id=session_id).exists():
        return session_id  # --sqlite: built by an earlier run
    asyncio.run(_write(session_id, turns, branches=True))
    # Neighbours written afterwards, as on a shared server.
    for i in range(8):
        asyncio.run(_write(f"bench/other {turns} {i}", max(1, turns // 8), branches=False))
    return session_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 / 800 turns")
    parser.add_argument("--postgres", default=os.environ.get("BENCH_DATABASE_URL", ""))
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument(
        "--sqlite", default="", help="keep the data in this SQLite file; reuse it when re-run"
    )
    args = parser.parse_args()
    drop = _configure(args)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    from agents import set_tracing_disabled
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.core.management import call_command
    from django.db import connection, connections
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from conversations.permissions import VIEW_CODENAME
    from dashboard.links import session_url, usage_url

    set_tracing_disabled(True)
    settings.ALLOWED_HOSTS = ["testserver"]
    sizes = (100, 800) if args.quick else (500, 8000)
    rows = []
    try:
        call_command("migrate", verbosity=0)
        user, _ = get_user_model().objects.get_or_create(username="bench")
        user.user_permissions.add(Permission.objects.get(codename=VIEW_CODENAME))
        client = Client()
        client.force_login(user)
        urls, usage_urls, built = {}, {}, {}
        for turns in sizes:
            started = time.perf_counter()
            session_id = _build(turns)
            urls[turns] = session_url(session_id, "late fork")
            usage_urls[turns] = usage_url(session_id, "late fork")
            built[turns] = time.perf_counter() - started
            for _ in range(3):  # warm up: template cache, connection
                assert client.get(urls[turns]).status_code == 200
        # Both sizes are built first, then requested alternately (the order flips every
        # round), so drift in the machine's speed hits both alike.
        times: dict[int, list[float]] = {turns: [] for turns in sizes}
        for r in range(args.requests):
            for turns in sizes if r % 2 == 0 else sizes[::-1]:
                t0 = time.perf_counter()
                response = client.get(urls[turns])
                times[turns].append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200
        for turns in sizes:
            url = urls[turns]
            with CaptureQueriesContext(connection) as queries:
                assert client.get(url).status_code == 200
            n_queries = len(queries)  # read now: the next request resets the query log
            usage_t = []
            for _ in range(5):
                t0 = time.perf_counter()
                client.get(usage_urls[turns])
                usage_t.append((time.perf_counter() - t0) * 1000)
            samples = sorted(times[turns])
            rows.append(
                (
                    turns,
                    statistics.median(samples),
                    samples[int(len(samples) * 0.9) - 1],
                    n_queries,
                    statistics.median(usage_t),
                    built[turns],
                )
            )
    finally:
        connections.close_all()
        if drop:
            import psycopg

            admin = psycopg.connect(args.postgres, autocommit=True)
            admin.execute(f'DROP DATABASE IF EXISTS "{drop}" WITH (FORCE)')
            admin.close()

    vendor = "postgresql" if args.postgres else "sqlite"
    print(f"\nSession detail page, server time ({vendor}, {args.requests} requests each)")
    print(
        f"{'turns':>7} {'median ms':>10} {'p90 ms':>8} {'queries':>8} {'usage.json ms':>14} "
        f"{'build s':>8}"
    )
    for turns, median, p90, n_queries, usage_ms, build_s in rows:
        print(
            f"{turns:>7} {median:>10.2f} {p90:>8.2f} {n_queries:>8} {usage_ms:>14.2f} "
            f"{build_s:>8.1f}"
        )
    ratio = rows[1][1] / rows[0][1]
    same_queries = rows[0][3] == rows[1][3]
    verdict = "PASS" if ratio <= 1.5 and same_queries else "FAIL"
    print(
        f"ratio {rows[1][0]}/{rows[0][0]} turns: {ratio:.2f} (target <= 1.5), "
        f"queries {'equal' if same_queries else 'DIFFER'}: {verdict}"
    )
    print("(usage.json is the charts' data: one point per turn, so it grows with the session.)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
