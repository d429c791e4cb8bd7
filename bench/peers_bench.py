"""Benchmark: ``DjangoSession`` vs the other Django ORM sessions for the Agents SDK on PyPI.

Contenders (issue 14, item 5), each in its own process and its own database:

- ``forkview``: ``conversations.session.DjangoSession`` (Forkview's settings and migrations).
- ``ods``: ``openai-django-sessions`` 0.2.0 (``openai_django_sessions.DjangoSession``; plain
  messages, no branches or structure rows), Python 3.11 + Django 5.2.
- ``agentic``: ``agentic-django`` 0.5.1 (``agentic_django.sessions.DatabaseSession``). It needs
  Django 6.1, hence Python 3.12: it runs on a separate interpreter, and its column says so.

The peers declare Python >= 3.12 but are plain Python; they are installed with
``--ignore-requires-python`` into bench-only virtual environments (never into the project):

    .venv/bin/python bench/peers_bench.py --setup         # once: builds the two environments
    .venv/bin/python bench/peers_bench.py                 # SQLite
    .venv/bin/python bench/peers_bench.py --postgres postgres://u:p@127.0.0.1:5432/db

The driver starts one worker process per contender; each builds its data (a session of
``--items`` items in 4-item turns, and a second one the writes go to), then times the op it is
told to run and answers with the time (measured in the worker: the pipe is not timed). Rounds
visit every op on every worker in a shuffled order, one worker at a time, so noise hits all
alike. It prints medians (ms), DjangoSession's ratio to each peer and PASS/FAIL for "faster on
every op". Not run by CI or the test suite (the peers come from PyPI).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import importlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENVS = Path(os.environ.get("FORKVIEW_BENCH_VENVS", Path.home() / ".cache" / "forkview-bench"))
OPS = ("append", "turn", "items_all", "items_20", "pop")
LABELS = {
    "append": "append 1 item",
    "turn": "add 4-item turn",
    "items_all": "get_items() [{items:,} items]",
    "items_20": "get_items(limit=20)",
    "pop": "pop_item",
}
CONTENDERS = {
    "forkview": "DjangoSession (Forkview)",
    "ods": "openai-django-sessions 0.2.0",
    "agentic": "agentic-django 0.5.1 [Python 3.12, Django 6.1]",
}
READER, WRITER = "peers-reader", "peers-writer"
#: Bench-only packages, imported by name (deptry would otherwise want them declared).
PEER_MODULES = {"ods": "openai_django_sessions", "agentic": "agentic_django"}
SESSION_BENCH = "session_bench"  # bench/session_bench.py (this folder is put on sys.path)


# ---- environments --------------------------------------------------------------------------


def python312() -> str:
    """A Python 3.12 interpreter of this machine (PATH, then pyenv's versions)."""
    found = shutil.which("python3.12")
    candidates = ([found] if found else []) + sorted(
        glob.glob(str(Path.home() / ".pyenv" / "versions" / "3.12*" / "bin" / "python3.12"))
    )
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SystemExit("No Python 3.12 found (PATH or ~/.pyenv/versions/3.12*) for agentic-django")


def setup() -> None:
    """Build the bench environments: py311 (Forkview as the lock pins it, the SDK's
    SQLAlchemySession drivers, openai-django-sessions) and py312 (agentic-django)."""
    py311, py312 = VENVS / "py311", VENVS / "py312"
    run = [sys.executable, "-m", "venv", "--clear", str(py311)]
    steps = [
        run,
        [str(py311 / "bin" / "pip"), "install", "-q", "-c", str(REPO / "requirements.lock")]
        + ["-e", str(REPO), "-r", str(BENCH / "requirements-bench.txt")],
        [str(py311 / "bin" / "pip"), "install", "-q", "--ignore-requires-python"]
        + ["-r", str(BENCH / "requirements-peers-py311.txt")],
        [python312(), "-m", "venv", "--clear", str(py312)],
        [str(py312 / "bin" / "pip"), "install", "-q", "-r"]
        + [str(BENCH / "requirements-peers-py312.txt")],
    ]
    for step in steps:
        print("+ " + " ".join(step), flush=True)
        subprocess.run(step, check=True)
    print(f"bench environments ready in {VENVS}")


def interpreter(contender: str) -> str:
    venv = VENVS / ("py312" if contender == "agentic" else "py311")
    path = venv / "bin" / "python"
    if not path.exists():
        raise SystemExit(f"{path} missing: run `.venv/bin/python bench/peers_bench.py --setup`")
    return str(path)


# ---- workers -------------------------------------------------------------------------------


def _items() -> tuple[Any, Any]:
    sys.path.insert(0, str(BENCH))
    bench = importlib.import_module(SESSION_BENCH)
    return bench.APPEND_ITEM, bench.turn_items


def _db(url: str) -> dict[str, Any]:
    """A Django DATABASES entry for ``url`` (sqlite:///path or postgres://...)."""
    from urllib.parse import urlsplit

    if url.startswith("sqlite:///"):
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": url[len("sqlite:///") - 1 :],
            "OPTIONS": {
                "timeout": 30,
                # The same journal and cache as Forkview's files (WAL: commits without a
                # rollback journal), so the peers are not timed on a slower journal mode.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA cache_size=-65536; "
                "PRAGMA mmap_size=268435456",
            },
        }
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": parts.username,
        "PASSWORD": parts.password,
        "HOST": parts.hostname,
        "PORT": parts.port or 5432,
        "CONN_MAX_AGE": None,
    }


async def worker_forkview(url: str) -> tuple[Any, Any]:
    sys.path.insert(0, str(BENCH))
    bench = importlib.import_module(SESSION_BENCH)
    bench.configure_django({"default": bench.parse_db_url(url)})
    from asgiref.sync import sync_to_async
    from django.core.management import call_command

    await sync_to_async(call_command)("migrate", verbosity=0)
    from conversations.session import DjangoSession

    return DjangoSession(session_id=READER), DjangoSession(session_id=WRITER)


async def worker_ods(url: str) -> tuple[Any, Any]:
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={"default": _db(url)},
        INSTALLED_APPS=["openai_django_sessions"],
        USE_TZ=True,
    )
    django.setup()
    from asgiref.sync import sync_to_async

    # The peers are bench-only (bench/requirements-peers-*.txt): imported by name, so that
    # deptry does not ask for them in pyproject.toml.
    DjangoSession = importlib.import_module(PEER_MODULES["ods"]).DjangoSession  # noqa: N806

    reader = await sync_to_async(DjangoSession)(READER, create_tables=True)
    return reader, DjangoSession(WRITER)


async def worker_agentic(url: str) -> tuple[Any, Any]:
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={"default": _db(url)},
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "agentic_django",
        ],
        USE_TZ=True,
        AGENTIC_DJANGO_AGENT_REGISTRY="builtins.dict",  # required; no agent runs here
    )
    django.setup()
    from asgiref.sync import sync_to_async
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    await sync_to_async(call_command)("migrate", verbosity=0)
    sessions_module = importlib.import_module(PEER_MODULES["agentic"] + ".sessions")
    DatabaseSession = sessions_module.DatabaseSession  # noqa: N806

    def sessions() -> tuple[Any, Any]:
        owner = get_user_model().objects.create(username="bench")
        return (
            DatabaseSession.get_or_create(READER, owner),
            DatabaseSession.get_or_create(WRITER, owner),
        )

    reader, writer = await sync_to_async(sessions)()
    return reader, writer


async def worker(kind: str, url: str, items: int) -> None:
    """Build the data, then serve ``{"op": ...}`` lines with ``{"ms": ...}`` lines."""
    append_item, turn_items = _items()
    build = {"forkview": worker_forkview, "ods": worker_ods, "agentic": worker_agentic}[kind]
    reader, writer = await build(url)
    for session in (reader, writer):
        for start in range(1, items // 4 + 1, 50):
            batch: list[Any] = []
            for turn in range(start, min(start + 50, items // 4 + 1)):
                batch += turn_items(turn)
            await session.add_items(batch)
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    counter = 0
    for line in sys.stdin:
        op = json.loads(line)["op"]
        counter += 1
        start = time.perf_counter()
        if op == "append":
            await writer.add_items([append_item])
        elif op == "turn":
            await writer.add_items(turn_items(100000 + counter, "w"))
        elif op == "items_all":
            got = await reader.get_items()
            assert len(got) == items, len(got)
        elif op == "items_20":
            assert len(await reader.get_items(limit=20)) == 20
        elif op == "pop":
            assert await writer.pop_item() is not None
        elapsed = (time.perf_counter() - start) * 1000
        out.write(json.dumps({"ms": elapsed}) + "\n")
        out.flush()


# ---- driver --------------------------------------------------------------------------------


class Worker:
    def __init__(self, kind: str, url: str, items: int) -> None:
        self.kind = kind
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE"))}
        env["PYTHONPATH"] = str(REPO)
        self.proc = subprocess.Popen(
            [interpreter(kind), __file__, "--worker", kind, "--url", url, "--items", str(items)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
        )

    def wait_ready(self) -> None:
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            raise SystemExit(f"worker {self.kind} failed to start (see its stderr above)")

    def run(self, op: str) -> float:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"op": op}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"worker {self.kind} died during {op}")
        return float(json.loads(line)["ms"])

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def measure(vendor: str, urls: dict[str, str], items: int, rounds: int) -> dict[str, Any]:
    workers = [Worker(kind, url, items) for kind, url in urls.items()]
    try:
        for w in workers:
            w.wait_ready()
        samples: dict[tuple[str, str], list[float]] = {}
        shuffler = random.Random(20261207)
        for r in range(rounds + 1):  # round 0 warms up
            ops = list(OPS)
            shuffler.shuffle(ops)
            for op in ops:
                order = list(workers)
                shuffler.shuffle(order)
                for w in order:
                    ms = w.run(op)
                    if r:
                        samples.setdefault((op, w.kind), []).append(ms)
    finally:
        for w in workers:
            w.stop()
    return {key: statistics.median(values) for key, values in samples.items()}


def report(vendor: str, medians: dict[tuple[str, str], float], items: int) -> list[bool]:
    kinds = [k for k in CONTENDERS if any(key[1] == k for key in medians)]
    peers = [k for k in kinds if k != "forkview"]
    print(f"\n== {vendor}: median ms per op ({items:,}-item session) ==")
    for kind in kinds:
        print(f"  {kind:9} {CONTENDERS[kind]}")
    headers = ["op", *kinds, *(f"fv/{p}" for p in peers), "faster than all"]
    rows, verdicts = [], []
    for op in OPS:
        fv = medians[(op, "forkview")]
        ok = all(fv < medians[(op, p)] for p in peers)
        verdicts.append(ok)
        rows.append(
            [LABELS[op].format(items=items)]
            + [f"{medians[(op, k)]:.3f}" for k in kinds]
            + [f"{fv / medians[(op, p)]:.2f}x" for p in peers]
            + ["PASS" if ok else "FAIL"]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print(
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        )
    )
    for row in rows:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return verdicts


def pg_admin(url: str, statements: list[str]) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setup", action="store_true", help="build the bench environments")
    parser.add_argument("--postgres", default="", help="also on PostgreSQL (scratch databases)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--items", type=int, default=2000, help="items per session (2000)")
    parser.add_argument("--rounds", type=int, default=60, help="measured rounds (60)")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args.worker, args.url, args.items))
        return 0
    if args.setup:
        setup()
        return 0
    started = time.perf_counter()
    verdicts: list[bool] = []
    workdir = Path(tempfile.mkdtemp(prefix="forkview-peers-"))
    try:
        if not args.no_sqlite:
            urls = {k: f"sqlite:///{workdir / f'{k}.sqlite3'}" for k in CONTENDERS}
            medians = measure("SQLite", urls, args.items, args.rounds)
            verdicts += report("SQLite", medians, args.items)
        if args.postgres:
            from urllib.parse import urlsplit, urlunsplit

            suffix = f"{os.getpid()}_{int(time.time())}"
            names = {k: f"forkview_peers_{k}_{suffix}" for k in CONTENDERS}
            pg_admin(args.postgres, [f'CREATE DATABASE "{n}"' for n in names.values()])
            try:
                base = urlsplit(args.postgres)
                urls = {k: urlunsplit(base._replace(path="/" + n)) for k, n in names.items()}
                medians = measure("PostgreSQL", urls, args.items, args.rounds)
                verdicts += report("PostgreSQL", medians, args.items)
            finally:
                drops = [f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in names.values()]
                pg_admin(args.postgres, drops)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n== Targets ==")
    print(f"{sum(verdicts)}/{len(verdicts)} ops where DjangoSession is faster than every peer")
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
