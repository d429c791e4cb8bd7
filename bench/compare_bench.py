"""Benchmark: server time of the pages whose work could grow faster than their input (issue 12).

Run from the repository root::

    .venv/bin/python bench/compare_bench.py --quick     # smoke run, a few seconds
    .venv/bin/python bench/compare_bench.py             # more requests per page
    .venv/bin/python bench/compare_bench.py --postgres postgres://u:p@127.0.0.1:5432/db

Pages are requested in-process through Django's test ``Client`` (a logged-in reviewer;
middleware, auth, selectors, templates: everything but the network):

- compare, two turns of 20,000 characters of unique tokens each (difflib's worst case: the
  word diff falls back to a line diff, and the page says so);
- compare, 60 turns per side of 4,000 characters that differ in one word each (the page's
  diff budget: early rows get word diffs, later ones fall back);
- the session page with 60 branches (the tree: pairwise common prefixes);
- the session page of a turn whose tool arguments nest 5,000 deep and whose output is 300 KB;
- the search with a 200-character, 40-word query over messages of 100 KB.

Target: every page's median server time under one second. The bench builds its own scratch
database (a SQLite file in a temp folder or ``--workdir``, or a scratch database on the
PostgreSQL server, dropped at the end) and never touches the configured one. Targets print
PASS/FAIL; nothing asserts them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
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

TARGET_MS = 1000.0


def _configure(args: argparse.Namespace) -> str | None:
    """Point Django at a scratch database before it is set up; return a PG db to drop."""
    if args.postgres:
        import psycopg

        parts = urlsplit(args.postgres)
        name = f"forkview_compare_bench_{os.getpid()}"
        admin = psycopg.connect(args.postgres, autocommit=True)
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
        admin.close()
        os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
        return name
    folder = args.workdir or tempfile.mkdtemp(prefix="forkview-compare-bench-")
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / f"compare-bench-{os.getpid()}.sqlite3"
    os.environ["DATABASE_URL"] = f"sqlite:///{path.resolve()}"
    return None


def unique_text(seed: int, chars: int) -> str:
    rng = random.Random(seed)
    words, size = [], 0
    while size < chars:
        word = f"id{rng.randrange(10**12):x}"
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:chars]


def _answer(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _deep(n: int) -> str:
    """JSON text nested ``n`` levels deep (built as text: ``json.dumps`` would recurse)."""
    return '{"k": [' * n + '"bottom"' + "]}" * n


async def _add(session: Any, items: list[dict[str, Any]]) -> None:
    await session.add_items(cast("list[TResponseInputItem]", items))


async def _build() -> dict[str, str]:
    from conversations.session import DjangoSession
    from dashboard.links import compare_url, session_url

    urls: dict[str, str] = {}
    s = DjangoSession(session_id="bench/compare 20k")
    await _add(s, [{"role": "user", "content": "q1"}, _answer("start")])
    await _add(s, [{"role": "user", "content": "q2"}, _answer(unique_text(1, 20_000))])
    await s.create_branch_from_turn(2, "alt")
    await _add(s, [{"role": "user", "content": "q2 again"}, _answer(unique_text(2, 20_000))])
    urls["compare: 2 turns x 20,000 unique chars"] = compare_url(s.session_id, "main", "alt")

    s = DjangoSession(session_id="bench/compare 60 rows")
    await _add(s, [{"role": "user", "content": "q0"}, _answer("start")])
    base = unique_text(3, 4_000)
    for n in range(1, 61):
        await _add(s, [{"role": "user", "content": f"q{n}"}, _answer(f"{base} left{n}")])
    await s.create_branch_from_turn(2, "alt")
    for n in range(1, 61):
        await _add(s, [{"role": "user", "content": f"r{n}"}, _answer(f"{base} right{n}")])
    urls["compare: 60 turns x 4,000 chars, one word apart"] = compare_url(
        s.session_id, "main", "alt"
    )

    s = DjangoSession(session_id="bench/60 branches")
    for n in range(1, 31):
        await _add(s, [{"role": "user", "content": f"q{n}"}, _answer(f"a{n}")])
    for b in range(60):
        await s.switch_to_branch("main")
        await s.create_branch_from_turn(1 + b % 30, f"b{b}")
        await _add(s, [{"role": "user", "content": f"b{b}"}, _answer(f"b{b}")])
    urls["session page: 60 branches"] = session_url(s.session_id, "b59")

    s = DjangoSession(session_id="bench/deep json")
    await _add(
        s,
        [
            {"role": "user", "content": "deep"},
            {
                "type": "function_call",
                "name": "deep",
                "call_id": "d",
                "arguments": _deep(5_000),
            },
            {"type": "function_call_output", "call_id": "d", "output": "B" * 300_000},
            _answer("done"),
        ],
    )
    urls["session page: 5,000-deep arguments, 300 KB output"] = session_url(s.session_id)

    s = DjangoSession(session_id="bench/search")
    for n in range(20):
        text = unique_text(10 + n, 100_000) + " needle"
        await _add(s, [{"role": "user", "content": f"needle {n} {text}"}, _answer(text)])
    query = " ".join(f"needle{n}x" for n in range(20))[:180] + " needle"
    urls["search: 40-word query, 100 KB messages"] = f"/?q={query}"
    return urls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 requests per page")
    parser.add_argument("--requests", type=int, default=0, help="requests per page")
    parser.add_argument("--postgres", default=os.environ.get("BENCH_DATABASE_URL", ""))
    parser.add_argument("--workdir", default="", help="folder for the scratch SQLite file")
    args = parser.parse_args()
    requests = args.requests or (3 if args.quick else 15)
    drop = _configure(args)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    from agents import set_tracing_disabled
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.core.management import call_command
    from django.db import connections
    from django.test import Client

    from conversations.permissions import VIEW_CODENAME

    set_tracing_disabled(True)
    settings.ALLOWED_HOSTS = ["testserver"]
    rows: list[tuple[str, float, float, str]] = []
    try:
        call_command("migrate", verbosity=0)
        user, _ = get_user_model().objects.get_or_create(username="bench")
        user.user_permissions.add(Permission.objects.get(codename=VIEW_CODENAME))
        client = Client()
        client.force_login(user)
        started = time.perf_counter()
        urls = asyncio.run(_build())
        built = time.perf_counter() - started
        for name, url in urls.items():
            first = client.get(url)
            assert first.status_code == 200, (name, first.status_code)
            note = "fallback announced" if b"compare-diff-notice" in first.content else ""
            samples = []
            for _ in range(requests):
                t0 = time.perf_counter()
                response = client.get(url)
                samples.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200
            samples.sort()
            rows.append((name, statistics.median(samples), samples[-1], note))
    finally:
        connections.close_all()
        if drop:
            import psycopg

            admin = psycopg.connect(args.postgres, autocommit=True)
            admin.execute(f'DROP DATABASE IF EXISTS "{drop}" WITH (FORCE)')
            admin.close()

    vendor = "postgresql" if args.postgres else "sqlite"
    print(
        f"\n== Bounded pages, server time ({vendor}, {requests} requests each, built {built:.1f} s)"
    )
    width = max(len(name) for name, *_ in rows)
    print(f"{'page':<{width}} {'median ms':>10} {'max ms':>9}  note")
    for name, median, worst, note in rows:
        print(f"{name:<{width}} {median:>10.1f} {worst:>9.1f}  {note}")
    print("\n== Targets ==")
    met = 0
    for name, median, _worst, _note in rows:
        ok = median < TARGET_MS
        met += ok
        print(f"{'PASS' if ok else 'FAIL'}  {name}: median {median:.0f} ms < {TARGET_MS:.0f} ms")
    print(f"{met}/{len(rows)} targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
