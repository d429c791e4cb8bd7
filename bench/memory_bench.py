"""Benchmark: peak memory of the imports, exports and review pages at two sizes (issue 14, item 7).

Run from the repository root::

    .venv/bin/python bench/memory_bench.py --quick            # 200 / 2,000; 100 / 1,600 turns
    .venv/bin/python bench/memory_bench.py                    # 1,000 / 20,000; 500 / 8,000 turns
    .venv/bin/python bench/memory_bench.py --postgres postgres://u:p@127.0.0.1:5432/db
    .venv/bin/python bench/memory_bench.py --workdir /tmp/mem # keep (and reuse) the built files
    .venv/bin/python bench/memory_bench.py --only exports,pages  # some cases only

Every case runs once per size, each in a fresh process (``--role measure``): Django is set up
and the case's code imported (pages: one warm-up request of the same page), then the peak is
reset (``/proc/self/clear_refs``; ``getrusage`` where that is impossible, then the peak
includes start-up) and the case runs once. Printed per case and size: the peak RSS (VmHWM:
heap plus file pages, SQLite's memory-mapped database included), the peak heap (RssAnon,
sampled every millisecond by a thread) and the growth of the peak over the process before
the case; then the ratio of the large size's peak to the small one's.

Cases:

- ``import_agents_db`` of an SDK SQLite file with N1 / N2 sessions (the scale bench's
  generator, ``bench/scale_bench.py --role build``: the SDK's tables as
  ``AdvancedSQLiteSession`` writes them) into an empty database: the whole file in one
  transaction, as the command runs it.
- ``import_session`` of a session tree of T1 / T2 turns into an empty database.
- ``export_session`` (json / jsonl / markdown, to a file) of a session of T1 / T2 turns
  (4 items and a usage row per turn, a branch forked half-way), and the same three as
  downloads through the ASGI application (``dashboard.asgi``, the body read and dropped as
  a server would send it).
- the session list and a search (``/?q=refund``) through the ASGI application, on databases
  of N1 / N2 sessions.

Targets (printed, never asserted): peak RSS at the large size <= 1.2x the small one's, for
every case. The bench creates its own scratch databases (SQLite files in a temp folder, or
scratch databases on the PostgreSQL server, dropped at the end unless ``--keep``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
import tests.support.environment  # noqa: E402, F401  (the tests' key and plain-HTTP settings)

#: Bump when the generated data changes: --workdir reuses files of the same version only.
DATA_VERSION = 1
TARGET = 1.2
EXPORT_SESSION = "memory-bench/long"
FORMATS = ("json", "jsonl", "markdown")

# ---- Memory figures --------------------------------------------------------------------------


def _status_mb(field: str) -> float:
    """A ``/proc/self/status`` figure in MB (the peak falls back to ``getrusage``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM
        return True
    except OSError:
        return False


class HeapSampler:
    """The highest RssAnon seen, sampled every millisecond on a thread of its own."""

    def __init__(self) -> None:
        self.peak = _status_mb("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _status_mb("RssAnon"))

    def __enter__(self) -> HeapSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_mb("RssAnon"))


def measure(run: Callable[[], Any]) -> dict[str, Any]:
    """Peak RSS and peak heap of ``run()`` (see the module docstring)."""
    import gc

    gc.collect()
    before = _status_mb("VmRSS")
    reset = _reset_peak()
    with HeapSampler() as heap:
        t0 = time.perf_counter()
        run()
        seconds = time.perf_counter() - t0
    return {
        "before": before,
        "peak": _status_mb("VmHWM"),
        "heap": heap.peak,
        "reset": reset,
        "seconds": seconds,
    }


# ---- Data ------------------------------------------------------------------------------------


def long_tree(session_id: str, turns: int) -> dict[str, Any]:
    """A session tree of ``turns`` turns on main (user, function_call, its output, assistant;
    usage on each) and a branch forked half-way with ``turns // 10`` turns of its own."""
    from conversations import classify

    start = datetime(2025, 1, 1, tzinfo=UTC)
    messages: list[dict[str, Any]] = []
    structure: list[dict[str, Any]] = []
    usage: list[dict[str, Any]] = []

    def at(n: int) -> str:
        return (start + timedelta(seconds=n)).isoformat()

    def add_turn(branch: str, turn: int, tag: str) -> None:
        call_id = f"call_{tag}_{turn}"
        items = [
            {"role": "user", "content": f"Turn {turn} ({tag}): where is order L-{turn:05d}?"},
            {
                "type": "function_call",
                "name": "lookup_order",
                "arguments": json.dumps({"order": f"L-{turn:05d}"}),
                "call_id": call_id,
                "id": f"fc_{tag}_{turn}",
                "status": "completed",
            },
            {
                "type": "function_call_output",
                "call_id": call_id,
                "output": json.dumps({"order": f"L-{turn:05d}", "status": "shipped"}),
            },
            {
                "type": "message",
                "role": "assistant",
                "id": f"msg_{tag}_{turn}",
                "status": "completed",
                "content": [
                    {
                        "type": "output_text",
                        "text": f"Order **L-{turn:05d}** has shipped; it arrives in 2 days.",
                        "annotations": [],
                    }
                ],
            },
        ]
        for item in items:
            ref = len(messages) + 1
            messages.append({"ref": ref, "created_at": at(ref), "item": item})
            label = classify.label(item)
            structure.append(
                {
                    "message": ref,
                    "branch_id": branch,
                    "message_type": label.message_type,
                    "sequence_number": len(structure) + 1,
                    "user_turn_number": turn,
                    "branch_turn_number": turn,
                    "tool_name": label.tool_name,
                    "created_at": at(ref),
                }
            )
        usage.append(
            {
                "branch_id": branch,
                "user_turn_number": turn,
                "requests": 2,
                "input_tokens": 900 + turn,
                "output_tokens": 60,
                "total_tokens": 960 + turn,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
                "created_at": at(len(messages)),
            }
        )

    for turn in range(1, turns + 1):
        add_turn("main", turn, "m")
    fork = turns // 2
    # The branch shares main's rows of turns < fork (prefix copies point at the same messages).
    for row in [r for r in structure if r["branch_id"] == "main" and r["user_turn_number"] < fork]:
        structure.append({**row, "branch_id": "retry", "sequence_number": len(structure) + 1})
    for u in [u for u in usage if u["branch_id"] == "main" and u["user_turn_number"] < fork]:
        usage.append({**u, "branch_id": "retry"})
    for turn in range(fork, fork + max(1, turns // 10)):
        add_turn("retry", turn, "r")
    return {
        "format": "forkview.session-tree",
        "version": 1,
        "session": {"session_id": session_id, "created_at": at(0), "updated_at": at(len(messages))},
        "clear_generation": 0,
        "reservations": ["main", "retry"],
        "messages": messages,
        "structure": structure,
        "usage": usage,
    }


# ---- Roles (each a process of its own, with its own DATABASE_URL) ----------------------------


def _django(url: str) -> None:
    import warnings

    warnings.filterwarnings("ignore", message="No directory at")  # static files not collected
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()


def _checkpoint() -> None:
    """SQLite: everything into the main file (it is copied as a template, connections may
    stay open in the pool)."""
    from django.db import connection

    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def role_migrate(url: str) -> int:
    _django(url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    _checkpoint()
    return 0


def role_build_exports(url: str, turns: int, tree_path: str) -> int:
    """An empty database plus one long session (through ``import_session``'s own path), and
    its tree as a file for the ``import_session`` case."""
    _django(url)
    from django.core.management import call_command

    from conversations.exchange import tree_dumps, tree_import

    call_command("migrate", verbosity=0)
    tree = long_tree(EXPORT_SESSION, turns)
    Path(tree_path).write_text(tree_dumps(tree), encoding="utf-8")
    tree_import(tree=tree)
    _checkpoint()
    print(json.dumps({"messages": len(tree["messages"]), "structure": len(tree["structure"])}))
    return 0


def _user(username: str = "memory-bench") -> Any:
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(
        username=username, defaults={"is_staff": True, "is_superuser": True}
    )
    return user


def _asgi_get(app: Any, path: str, query: str, cookie: str) -> tuple[int, int]:
    """GET through the ASGI application; the body is counted and dropped as it is sent."""
    state = {"status": 0, "bytes": 0}

    async def go() -> None:
        sent_request = asyncio.Event()

        async def receive() -> dict[str, Any]:
            if not sent_request.is_set():
                sent_request.set()
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.Event().wait()  # never disconnects
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": quote(path).encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": [(b"host", b"testserver"), (b"cookie", cookie.encode())],
            "server": ("testserver", 80),
            "client": ("127.0.0.1", 50000),
        }
        await app(scope, receive, send)

    asyncio.run(go())
    return state["status"], state["bytes"]


def role_measure(url: str, case: str, arg: str) -> int:
    """One case, once, in this fresh process; prints its figures as one JSON line."""
    _django(url)
    from django.conf import settings
    from django.core.management import call_command

    out: dict[str, Any] = {}
    if case.startswith(("page:", "download:")):
        from django.test import Client

        from dashboard.asgi import application
        from dashboard.links import export_url

        settings.ALLOWED_HOSTS = ["testserver"]
        client = Client()
        client.force_login(_user())
        cookie = (
            f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
        )
        kind, _, what = case.partition(":")
        if kind == "page":
            path, query = "/", ("q=refund" if what == "search" else "")
        else:
            target = export_url(EXPORT_SESSION, what)
            path, _, query = target.partition("?")
            query = query or "branch=main"
        _asgi_get(application, path, query, cookie)  # warm-up: templates, caches, imports
        result: dict[str, Any] = {}

        def run() -> None:
            result["status"], result["bytes"] = _asgi_get(application, path, query, cookie)

        out = measure(run)
        out.update(result)
    elif case == "import_agents_db":
        from conversations.management.commands import import_agents_db  # noqa: F401

        out = measure(
            lambda: call_command("import_agents_db", arg, progress="never", stdout=_Null())
        )
    elif case == "import_session":
        from conversations.management.commands import import_session  # noqa: F401

        out = measure(lambda: call_command("import_session", arg, stdout=_Null()))
    elif case.startswith("export_session:"):
        from conversations.management.commands import export_session  # noqa: F401

        fmt = case.partition(":")[2]
        output = Path(arg)

        def export() -> None:
            call_command("export_session", EXPORT_SESSION, "--format", fmt, "-o", str(output))

        out = measure(export)
        out["bytes"] = output.stat().st_size
        output.unlink()
    else:
        raise SystemExit(f"unknown case {case}")
    print(json.dumps(out), flush=True)
    return 0


class _Null:
    def write(self, *args: Any, **kwargs: Any) -> None:
        pass

    def flush(self) -> None:
        pass


# ---- The orchestrator ------------------------------------------------------------------------


def _build_env() -> dict[str, str]:
    """The scale bench's bulk build switches SQLite's journal off, which needs the file to
    itself: no connection kept open in the pool."""
    return {**os.environ, "FORKVIEW_DB_POOL_SIZE": "0"}


def _child(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    lines = proc.stdout.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {"output": lines[-1]}
    result["returncode"] = proc.returncode
    return result


def _pg_admin(url: str, statements: list[str]) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


class Databases:
    """Scratch databases: SQLite files in the work folder, or databases on the server."""

    def __init__(self, pg: str, workdir: Path, keep: bool) -> None:
        self.pg, self.workdir, self.keep = pg, workdir, keep
        self.created: list[str] = []
        self.suffix = f"{os.getpid()}_{int(time.time())}"

    def url(self, key: str) -> str:
        if not self.pg:
            return f"sqlite:///{self.workdir / f'{key}.sqlite3'}"
        parts = urlsplit(self.pg)
        return urlunsplit(parts._replace(path=f"/forkview_memory_bench_{key}_{self.suffix}"))

    def fresh(self, key: str, template: str | None = None) -> str:
        """An empty database ``key`` (a copy of ``template``'s migrated one if given)."""
        url = self.url(key)
        if not self.pg:
            path = Path(url.removeprefix("sqlite:///"))
            for extra in ("", "-wal", "-shm"):
                Path(f"{path}{extra}").unlink(missing_ok=True)
            if template is not None:
                shutil.copyfile(self.url(template).removeprefix("sqlite:///"), path)
            return url
        name = urlsplit(url).path.lstrip("/")
        self.drop([name])
        source = urlsplit(self.url(template)).path.lstrip("/") if template else None
        _pg_admin(
            self.pg, [f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{source}"' if source else "")]
        )
        self.created.append(name)
        return url

    def drop(self, names: list[str]) -> None:
        if self.pg and names:
            _pg_admin(self.pg, [f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in names])

    def close(self) -> None:
        if self.pg and not self.keep:
            self.drop(self.created)
        elif self.created:
            print(f"kept PostgreSQL databases: {', '.join(self.created)}")


def orchestrate(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.quick:
        sessions, turns = (200, 2000), (100, 1600)
    else:
        sessions, turns = (args.small, args.large), (args.small_turns, args.large_turns)
    only = set(args.only.split(",")) if args.only else {"imports", "exports", "pages"}
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="forkview-memory-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    dbs = Databases(args.postgres, workdir, args.keep)
    vendor = "postgresql" if args.postgres else "sqlite"
    rows: list[tuple[str, str, dict[int, dict[str, Any]]]] = []
    print(
        f"== Memory bench ({vendor}): {sessions[0]:,} / {sessions[1]:,} sessions, "
        f"{turns[0]:,} / {turns[1]:,} turns ==",
        flush=True,
    )

    def case(
        label: str, unit: str, sizes: tuple[int, int], run: Callable[[int], dict[str, Any]]
    ) -> None:
        figures = {}
        for n in sizes:
            result = run(n)
            if result.get("returncode") or "peak" not in result:
                print(f"  {label} at {n:,} failed: {result}")
                return
            figures[n] = result
        rows.append((label, unit, figures))
        small, large = (figures[n] for n in sizes)
        print(
            f"  {label}: peak {small['peak']:.0f} / {large['peak']:.0f} MB, "
            f"heap {small['heap']:.0f} / {large['heap']:.0f} MB",
            flush=True,
        )

    try:
        # SDK files (and, on SQLite, the list's databases): the scale bench's generator.
        sdk: dict[int, str] = {}
        if only & {"imports", "pages"}:
            print("\n-- build SDK files (bench/scale_bench.py --role build)", flush=True)
            for n in sessions:
                path = workdir / f"sdk_{n}_v{DATA_VERSION}.sqlite3"
                marker = Path(f"{path}.done")
                if not marker.exists():
                    for extra in ("", "-wal", "-shm"):
                        Path(f"{path}{extra}").unlink(missing_ok=True)
                    done = subprocess.run(
                        [sys.executable, str(REPO / "bench" / "scale_bench.py"), "--role", "build"]
                        + ["--db", f"sqlite:///{path}", "--sessions", str(n)],
                        cwd=REPO,
                        env=_build_env(),
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                    if done.returncode:
                        print(f"building {path} failed")
                        return 1
                    marker.write_text(done.stdout)
                sdk[n] = str(path)
                print(f"  {n:>7,} sessions: {path}", flush=True)

        if "imports" in only:
            print("\n-- imports", flush=True)
            template = "empty"
            dbs.fresh(template)
            if _child("--role", "migrate", "--db", dbs.url(template))["returncode"]:
                print("migrate failed")
                return 1

            def import_sdk(n: int) -> dict[str, Any]:
                url = dbs.fresh(f"import_{n}", template)
                return _child(
                    "--role", "measure", "--db", url, "--case", "import_agents_db", "--arg", sdk[n]
                )

            case("import_agents_db", "sessions", sessions, import_sdk)

        if only & {"imports", "exports"}:
            print("\n-- build sessions for the exports (tree import)", flush=True)
            trees: dict[int, str] = {}
            for t in turns:
                tree_path = workdir / f"tree_{t}_v{DATA_VERSION}.json"
                url = dbs.fresh(f"export_{t}")
                built = _child(
                    "--role",
                    "build-exports",
                    "--db",
                    url,
                    "--turns",
                    str(t),
                    "--arg",
                    str(tree_path),
                )
                if built["returncode"]:
                    print(f"building the {t}-turn session failed: {built}")
                    return 1
                trees[t] = str(tree_path)
                print(
                    f"  {t:>7,} turns: {built['messages']:,} messages, "
                    f"{built['structure']:,} structure rows",
                    flush=True,
                )

            if "imports" in only:

                def import_tree(t: int) -> dict[str, Any]:
                    url = dbs.fresh(f"import_tree_{t}", "empty")
                    return _child(
                        "--role",
                        "measure",
                        "--db",
                        url,
                        "--case",
                        "import_session",
                        "--arg",
                        trees[t],
                    )

                case("import_session", "turns", turns, import_tree)

            if "exports" in only:
                print("\n-- exports", flush=True)
                for fmt in FORMATS:

                    def export(t: int, fmt: str = fmt) -> dict[str, Any]:
                        target = workdir / f"export_{t}.{fmt}"
                        return _child(
                            "--role", "measure", "--db", dbs.url(f"export_{t}"),
                            "--case", f"export_session:{fmt}", "--arg", str(target),
                        )  # fmt: skip

                    case(f"export_session --format {fmt}", "turns", turns, export)
                for fmt in FORMATS:

                    def download(t: int, fmt: str = fmt) -> dict[str, Any]:
                        return _child(
                            "--role",
                            "measure",
                            "--db",
                            dbs.url(f"export_{t}"),
                            "--case",
                            f"download:{fmt}",
                        )

                    case(f"download {fmt} (ASGI)", "turns", turns, download)

        if "pages" in only:
            print("\n-- review pages (ASGI)", flush=True)
            page_db: dict[int, str] = {}
            for n in sessions:
                if args.postgres:
                    url = dbs.fresh(f"pages_{n}")
                    loaded = subprocess.run(
                        [sys.executable, str(REPO / "bench" / "scale_bench.py"), "--role", "build"]
                        + ["--db", url, "--sessions", str(n)],
                        cwd=REPO,
                        env=_build_env(),
                        stdout=subprocess.DEVNULL,
                    )
                    if loaded.returncode:
                        print(f"building the {n}-session database failed")
                        return 1
                    page_db[n] = url
                else:
                    page_db[n] = f"sqlite:///{sdk[n]}"
            for page in ("list", "search"):

                def get(n: int, page: str = page) -> dict[str, Any]:
                    return _child("--role", "measure", "--db", page_db[n], "--case", f"page:{page}")

                case(f"page: {page}", "sessions", sessions, get)
    finally:
        dbs.close()
        if not args.workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif not args.postgres:
            print(f"SQLite files kept in {workdir}")

    print(
        f"\n== Peak memory per case ({vendor}; MB; each in a fresh process, peak reset after "
        "start-up) ==\n   peak = VmHWM (heap + file pages, SQLite's memory-mapped file "
        "included), heap = peak RssAnon (sampled), +grow = peak over the process before the case"
    )
    header = [
        "case",
        "sizes",
        "small peak",
        "heap",
        "+grow",
        "large peak",
        "heap",
        "+grow",
        "ratio",
        "heap ratio",
        f"<= {TARGET}x",
        "s (small / large)",
    ]
    table = []
    checks = []
    for label, unit, figures in rows:
        small, large = figures.values()
        sizes_label = " / ".join(f"{n:,}" for n in figures) + f" {unit}"
        ratio = large["peak"] / small["peak"]
        heap_ratio = large["heap"] / small["heap"]
        ok = ratio <= TARGET
        checks.append((f"{label}: {ratio:.2f}x", ok))
        table.append(
            [
                label,
                sizes_label,
                f"{small['peak']:.0f}",
                f"{small['heap']:.0f}",
                f"+{small['peak'] - small['before']:.0f}",
                f"{large['peak']:.0f}",
                f"{large['heap']:.0f}",
                f"+{large['peak'] - large['before']:.0f}",
                f"{ratio:.2f}x",
                f"{heap_ratio:.2f}x",
                "PASS" if ok else "FAIL",
                f"{small['seconds']:.1f} / {large['seconds']:.1f}",
            ]
        )
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *table]:
        print(
            "  ".join(
                str(c).ljust(w) if i < 2 else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    if rows and not all(f["reset"] for _, _, figs in rows for f in figs.values()):
        print("(peak not resettable here: ru_maxrss since the process started)")
    print("\n== Targets ==")
    for label, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}")
    print(f"{sum(ok for _, ok in checks)}/{len(checks)} targets met")
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="200 / 2,000 sessions, 100 / 1,600 turns"
    )
    parser.add_argument("--small", type=int, default=1000, help="sessions, small size")
    parser.add_argument("--large", type=int, default=20_000, help="sessions, large size")
    parser.add_argument("--small-turns", type=int, default=500, help="turns of the small session")
    parser.add_argument("--large-turns", type=int, default=8000, help="turns of the large session")
    parser.add_argument("--only", default="", help="comma-separated: imports, exports, pages")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_DATABASE_URL", ""),
        help="PostgreSQL URL (default: $BENCH_DATABASE_URL); scratch databases are created there",
    )
    parser.add_argument("--workdir", default="", help="files go (and stay, reused next time) here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")
    parser.add_argument("--role", default="", help=argparse.SUPPRESS)
    parser.add_argument("--db", default="", help=argparse.SUPPRESS)
    parser.add_argument("--case", default="", help=argparse.SUPPRESS)
    parser.add_argument("--arg", default="", help=argparse.SUPPRESS)
    parser.add_argument("--turns", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "migrate":
        return role_migrate(args.db)
    if args.role == "build-exports":
        return role_build_exports(args.db, args.turns, args.arg)
    if args.role == "measure":
        return role_measure(args.db, args.case, args.arg)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
