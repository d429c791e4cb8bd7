"""Benchmark: ``/insights/`` over 30, 90 and 365 days at two sizes (issue 16 item 5).

Run from the repository root::

    .venv/bin/python bench/insights_bench.py --quick                 # 20 / 200 turns a day
    .venv/bin/python bench/insights_bench.py                         # 30 / 820 turns a day
    .venv/bin/python bench/insights_bench.py --postgres postgres://u:p@127.0.0.1:5432/db
    .venv/bin/python bench/insights_bench.py --before /tmp/old_selectors.py

It builds, with bulk SQL (``executemany`` on SQLite, ``COPY`` on PostgreSQL), a scratch
database per size holding a year of traces up to today: ``--small`` / ``--large`` turns
(traces, each linked to a session turn) a day, each with 1-3 model calls of six models (one
without a price, the free demo model) and 0-2 tool calls (one tool fails often). The large
size is the "100,000 sessions" of issue 16: 820 turns a day is ~300,000 traces and ~900,000
spans in the year. Model spans carry ``cost_nanos`` as the ORM's writers would set it (each
model's linear price, probed once: the bench's calls stay below any long-context tier).

Then, for each range ending today (30, 90, 365 days), through the page itself (Django's test
``Client``, logged in, in process) and ``insights_get``:

- ``cold``: the first view after the rollups were emptied (it rolls the missing days up),
- ``warm``: the median of ``--requests`` views (past days read back, today live),
- ``before``: with ``--before FILE``, a module with the old ``insights_get(start=, end=)``
  (e.g. ``git show e225402:dashboard/insights/selectors.py > /tmp/old_selectors.py``), once.

Target: a year <= 0.5 s at the large size, warm, with a constant query count (printed).
Timings are printed, never asserted. Scratch databases are dropped at the end (``--keep``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
import tests.support.environment  # noqa: E402, F401  (the tests' key and plain-HTTP settings)

MODELS = [
    "gpt-4o",
    "gpt-4.1-mini",
    "o3",
    "claude-sonnet-4-5",
    "acme-llm-7",
    "forkview-offline-demo",
]
TOOLS = ["get_weather", "search_docs", "lookup_order", "explode"]
RANGES = (30, 90, 365)


def _configure(args: argparse.Namespace, label: str) -> str | None:
    if args.postgres:
        parts = urlsplit(args.postgres)
        name = f"insights_bench_{label}_{os.getpid()}"
        os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
        os.environ["BENCH_ADMIN_URL"] = args.postgres
        return name
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="insights_bench_"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{label}.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    return None


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(os.environ["BENCH_ADMIN_URL"], autocommit=True) as conn:
        conn.execute(sql)


def _rates() -> dict[str, tuple[float, float, float] | None]:
    """Per-token dollars (input, cached input, output) per model: None for no price."""
    from conversations.costs import response_cost

    probe = 1_000_000
    rates: dict[str, tuple[float, float, float] | None] = {}
    for model in MODELS:
        values = [
            response_cost(model=model, input_tokens=i, output_tokens=o, cached_input_tokens=c).usd
            for i, o, c in ((probe, 0, 0), (probe, 0, probe), (0, probe, 0))
        ]
        if any(v is None for v in values):
            rates[model] = None
            continue
        inp, cached, out = (float(v or 0) / probe for v in values)
        rates[model] = (inp, cached, out)
    return rates


Rows = list[tuple[Any, ...]]


def _rows(per_day: int, today: date, seed: int = 11) -> tuple[Rows, Rows]:
    rng = random.Random(seed)
    rates = _rates()
    traces: list[tuple[Any, ...]] = []
    spans: list[tuple[Any, ...]] = []
    first = today - timedelta(days=364)
    for d in range(365):
        midnight = datetime.combine(first + timedelta(days=d), datetime.min.time(), tzinfo=UTC)
        for n in range(per_day):
            tid = f"t{d}-{n}"
            start = midnight + timedelta(seconds=rng.uniform(0, 86_000))
            wall = rng.lognormvariate(8.3, 0.8)
            traces.append(
                (
                    tid,
                    "bench",
                    f"s{d}-{n // 3}",
                    f"s{d}-{n // 3}",
                    "main",
                    n % 3 + 1,
                    start,
                    start + timedelta(milliseconds=wall),
                )
            )
            offset = 0.0
            for m in range(rng.randint(1, 3)):
                model = rng.choice(MODELS)
                inp, out = rng.randint(200, 30_000), rng.randint(10, 2_000)
                cached = rng.randint(0, inp) if rng.random() < 0.4 else 0
                ms = rng.lognormvariate(7.2, 0.7)
                rate = rates[model]
                nanos = (
                    None
                    if rate is None
                    else round(((inp - cached) * rate[0] + cached * rate[1] + out * rate[2]) * 1e9)
                )
                at = start + timedelta(milliseconds=offset)
                offset += ms
                spans.append(
                    (
                        f"{tid}-m{m}",
                        tid,
                        "response",
                        model,
                        at,
                        at + timedelta(milliseconds=ms),
                        ms,
                        None,
                        model,
                        inp,
                        out,
                        cached,
                        nanos,
                    )
                )
            for k in range(rng.randint(0, 2)):
                tool = rng.choice(TOOLS)
                failed = rng.random() < (0.5 if tool == "explode" else 0.02)
                at = start + timedelta(milliseconds=offset + k)
                spans.append(
                    (
                        f"{tid}-f{k}",
                        tid,
                        "function",
                        tool,
                        at,
                        at + timedelta(milliseconds=40),
                        40.0,
                        '{"message": "boom"}' if failed else None,
                        None,
                        None,
                        None,
                        None,
                        None,
                    )
                )
    return traces, spans


def _build(per_day: int, today: date) -> tuple[int, int, float]:
    from django.db import connection, transaction

    traces, spans = _rows(per_day, today)
    began = time.perf_counter()
    trace_cols = (
        "trace_id, workflow_name, group_id, session_id, branch_id, turn, started_at, ended_at"
    )
    span_cols = (
        "span_id, trace_id, kind, name, started_at, ended_at, duration_ms, error, model, "
        "input_tokens, output_tokens, cached_input_tokens, cost_nanos, data"
    )
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            raw = cursor.cursor
            with raw.copy(f"COPY forkview_traces ({trace_cols}) FROM STDIN") as copy:
                for row in traces:
                    copy.write_row(row)
            with raw.copy(f"COPY forkview_spans ({span_cols}) FROM STDIN") as copy:
                for row in spans:
                    copy.write_row((*row, "{}"))
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE forkview_traces")
            cursor.execute("VACUUM ANALYZE forkview_spans")
    else:

        def text(value: Any) -> Any:
            return value.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value

        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous=OFF")
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO forkview_traces ({trace_cols}) VALUES ({', '.join(['%s'] * 8)})",
                [tuple(text(v) for v in row) for row in traces],
            )
            cursor.executemany(
                f"INSERT INTO forkview_spans ({span_cols}) VALUES ({', '.join(['%s'] * 14)})",
                [(*(text(v) for v in row), "{}") for row in spans],
            )
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("ANALYZE")
    return len(traces), len(spans), time.perf_counter() - began


def _empty_rollups() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM forkview_insight_days")


def _measure(args: argparse.Namespace, per_day: int, label: str) -> list[str]:
    scratch = _configure(args, label)
    if scratch:
        _admin(f'CREATE DATABASE "{scratch}"')
    try:
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.db import connection, connections
        from django.test import Client
        from django.test.utils import CaptureQueriesContext

        from dashboard.insights.selectors import insights_get

        connections.close_all()
        connections["default"].settings_dict["NAME"] = scratch or os.environ[
            "DATABASE_URL"
        ].removeprefix("sqlite:///")
        call_command("migrate", verbosity=0)
        today = datetime.now(tz=UTC).date()
        n_traces, n_spans, build_s = _build(per_day, today)
        from django.conf import settings

        settings.ALLOWED_HOSTS = ["testserver"]
        user = get_user_model().objects.create_superuser("bench", "b@example.com", "bench-pass-1")
        client = Client()
        client.force_login(user)
        before = None
        if args.before:
            spec = importlib.util.spec_from_file_location("old_insights", args.before)
            assert spec and spec.loader
            before = importlib.util.module_from_spec(spec)
            sys.modules["old_insights"] = before
            spec.loader.exec_module(before)
        lines = [
            f"-- {connection.vendor}, {per_day} turns a day: {n_traces:,} traces, "
            f"{n_spans:,} spans (built in {build_s:.0f} s)"
        ]
        warm_queries: set[int] = set()
        for days in RANGES:
            start = today - timedelta(days=days - 1)
            params = {"from": start.isoformat(), "to": today.isoformat()}
            _empty_rollups()
            began = time.perf_counter()
            with CaptureQueriesContext(connection) as cold_q:
                assert client.get("/insights/", params).status_code == 200
            cold = time.perf_counter() - began
            warm: list[float] = []
            selector: list[float] = []
            for _ in range(args.requests):
                began = time.perf_counter()
                with CaptureQueriesContext(connection) as warm_q:
                    assert client.get("/insights/", params).status_code == 200
                warm.append(time.perf_counter() - began)
                began = time.perf_counter()
                insights_get(start=start, end=today)
                selector.append(time.perf_counter() - began)
            old = ""
            if before is not None:
                began = time.perf_counter()
                before.insights_get(start=start, end=today)
                old = f"  before {time.perf_counter() - began:6.3f} s"
            warm_queries.add(len(warm_q))
            if days == RANGES[-1]:
                ok = statistics.median(warm) <= YEAR_TARGET_S
                lines.append(
                    f"@@ {'PASS' if ok else 'FAIL'}  {per_day} turns a day: {days} days warm "
                    f"<= {YEAR_TARGET_S} s ({statistics.median(warm):.3f} s)"
                )
            lines.append(
                f"{days:>4} days: page warm {statistics.median(warm):6.3f} s "
                f"({len(warm_q)} queries)  insights_get warm {statistics.median(selector):6.3f} s"
                f"  page cold {cold:6.3f} s ({len(cold_q)} queries){old}"
            )
        lines.append(
            f"@@ {'PASS' if len(warm_queries) == 1 else 'FAIL'}  {per_day} turns a day: the "
            f"same number of queries for every range ({sorted(warm_queries)})"
        )
        return lines
    finally:
        from django.db import connections

        connections.close_all()
        if scratch and not args.keep:
            _admin(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


#: The issue's target: a year's view, warm, at the large size (printed, never asserted).
YEAR_TARGET_S = 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 / 200 turns a day")
    parser.add_argument("--small", type=int, default=0, help="turns a day (default 30)")
    parser.add_argument("--large", type=int, default=0, help="turns a day (default 820)")
    parser.add_argument("--requests", type=int, default=5, help="warm views per range")
    parser.add_argument("--before", default="", help="a module with the old insights_get")
    parser.add_argument("--postgres", default=os.environ.get("BENCH_DATABASE_URL", ""))
    parser.add_argument("--workdir", default="")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--only", choices=("small", "large"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    small = args.small or (20 if args.quick else 30)
    large = args.large or (200 if args.quick else 820)
    if not args.only:
        # One process per size: Django (and PostgreSQL's connection pool) set up once each.
        print("== /insights/: page views over 30 / 90 / 365 days ending today ==", flush=True)
        verdicts: list[str] = []
        for label in ("small", "large"):
            child = subprocess.run(
                [sys.executable, __file__, *sys.argv[1:], "--only", label],
                check=True,
                stdout=subprocess.PIPE,
                text=True,
            )
            for line in child.stdout.splitlines():
                if line.startswith("@@ "):
                    verdicts.append(line[3:])
                else:
                    print(line, flush=True)
        print("== Targets ==")
        for verdict in verdicts:
            print(verdict)
        met = sum(v.startswith("PASS") for v in verdicts)
        print(f"{met}/{len(verdicts)} targets met")
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    os.environ.setdefault("DJANGO_DEBUG", "0")
    per_day = small if args.only == "small" else large
    for line in _measure(args, per_day, args.only):
        print(line, flush=True)


if __name__ == "__main__":
    main()
