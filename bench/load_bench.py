"""Benchmark: a real deployment under load (``forkview serve`` on PostgreSQL + Redis).

Run from the repository root::

    .venv/bin/python bench/load_bench.py --postgres postgres://u:p@127.0.0.1:5432/db \\
        --redis redis://127.0.0.1:6379/0            # 1 and 2 workers, 20 s each
    .venv/bin/python bench/load_bench.py --quick   # smoke run on SQLite, 1 worker, ~30 s

The bench makes a scratch database (on the PostgreSQL server, dropped at the end; or a SQLite
file), migrates it, loads the demo data (``seed_demo``) and then, for each worker count, starts
``manage.py serve --workers N`` on 127.0.0.1 (the production server: uvicorn, N processes)
and runs for ``--duration`` seconds:

- ``--browsers`` concurrent browsing clients (threads, each logged in through the login form),
  each requesting in turn the session list, a search, a session page and its ``usage.json``
  without think time;
- ``--chats`` concurrent chat clients (websockets, one user and one session each, the offline
  demo model with its normal token delay) sending turns back to back.

Reported per worker count: requests per second, p50 / p95 / p99 per page kind, errors (any
non-200 or a failed connection), turns sent and their p50 / p95. Then the storage check: every
chat session holds exactly the turns its client saw completed, numbered 1..n without gaps or
duplicates. Last, two instances (two ports, one worker each: two hosts behind a load balancer)
share the database and Redis: a viewer connected to instance B must see every turn chatted on
instance A. Targets (printed, never asserted): 0 errors, 0 lost or duplicated turns, every
cross-instance turn seen.
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import websockets

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from tests.support.served import server_env  # noqa: E402  (the served settings of the tests)

PASSWORD = "pw-load-bench-1"
PAGES = {
    "list": "/",
    "search": "/?q=weather",
    "session": "/sessions/" + urllib.parse.quote("demo/trip-planning", safe="") + "/",
    "usage.json": "/sessions/" + urllib.parse.quote("demo/trip-planning", safe="") + "/usage.json",
}


def _env(database_url: str, redis_url: str, data_dir: Path) -> dict[str, str]:
    env = server_env(
        password=PASSWORD,
        DATABASE_URL=database_url,
        FORKVIEW_DATA_DIR=str(data_dir),
        FORKVIEW_MAX_TURNS_PER_USER="0",
        FORKVIEW_OFFLINE_TOKEN_DELAY_MS="12",  # the default: streamed as a model would
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def _manage(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``manage.py serve --workers N`` on a free port, until stopped."""

    def __init__(self, env: dict[str, str], workers: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(env["FORKVIEW_DATA_DIR"]) / f"server-{self.port}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(self.port)]
            + ["--workers", str(workers)],
            cwd=REPO,
            env={**env, "DJANGO_LOG_LEVEL": "ERROR"},
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"the server did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Client:
    """One logged-in browser: a cookie jar and the login form."""

    def __init__(self, base_url: str, username: str) -> None:
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        page = self.opener.open(base_url + "/accounts/login/", timeout=30).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if token is None:
            raise SystemExit("no login form")
        data = urllib.parse.urlencode(
            {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)}
        ).encode()
        request = urllib.request.Request(
            base_url + "/accounts/login/", data=data, headers={"Referer": base_url + "/"}
        )
        with self.opener.open(request, timeout=30) as response:
            if "/accounts/login/" in response.url:
                raise SystemExit(f"login of {username} failed")

    def get(self, path: str) -> int:
        try:
            with self.opener.open(self.base_url + path, timeout=30) as response:
                response.read()
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    def cookie(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


def _browse(client: Client, until: float, times: dict[str, list[float]], errors: list[str]) -> None:
    while time.monotonic() < until:
        for kind, path in PAGES.items():
            start = time.perf_counter()
            status = client.get(path)
            times[kind].append(time.perf_counter() - start)
            if status != 200:
                errors.append(f"{kind} -> {status}")


async def _chat(
    base_url: str, cookie: str, session_id: str, until: float, durations: list[float]
) -> tuple[int, list[str]]:
    """Turns back to back until ``until``; returns (turns completed, errors)."""
    port = urllib.parse.urlsplit(base_url).port
    url = f"ws://127.0.0.1:{port}/ws/chat/{urllib.parse.quote(session_id, safe='')}/"
    done, errors = 0, []
    try:
        async with websockets.connect(
            url, additional_headers={"Cookie": cookie}, origin=base_url
        ) as ws:
            json.loads(await asyncio.wait_for(ws.recv(), 10))  # ready
            while time.monotonic() < until:
                start = time.perf_counter()
                await ws.send(
                    json.dumps({"type": "user_message", "text": f"what time is it {done}"})
                )
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    if message["type"] == "turn_complete":
                        done += 1
                        durations.append(time.perf_counter() - start)
                        break
                    if message["type"] in ("error", "busy"):
                        errors.append(f"{session_id}: {message}")
                        break
    except Exception as exc:  # a dropped connection is an error of the run, not a crash
        errors.append(f"{session_id}: {type(exc).__name__}: {exc}")
    return done, errors


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _spread(values: list[float], quantiles: tuple[float, ...], fmt: str, width: int) -> str:
    """``p50/p95/p99`` in ms, right-aligned in ``width``."""
    return "/".join(fmt.format(_pct(values, q)) for q in quantiles).rjust(width)


def _stored_turns(session_ids: list[str]) -> dict[str, list[int]]:
    from conversations.models import MessageStructure

    turns: dict[str, list[int]] = {}
    for sid in session_ids:
        rows = MessageStructure.objects.filter(
            session_id=sid, branch_id="main", message_type="user"
        ).values_list("user_turn_number", flat=True)
        turns[sid] = sorted(rows)
    return turns


def run_load(
    env: dict[str, str], workers: int, args: argparse.Namespace, tag: str
) -> dict[str, Any]:
    server = Server(env, workers)
    try:
        browsers = [Client(server.url, "bench") for _ in range(args.browsers)]
        chatters = [Client(server.url, f"bench-chat-{i}") for i in range(args.chats)]
        times: dict[str, list[float]] = {kind: [] for kind in PAGES}
        errors: list[str] = []
        until = time.monotonic() + args.duration
        threads = [
            threading.Thread(target=_browse, args=(c, until, times, errors)) for c in browsers
        ]
        for thread in threads:
            thread.start()
        sessions = [f"load/{tag}/w{workers}/chat-{i}" for i in range(args.chats)]
        durations: list[float] = []

        async def chats() -> list[tuple[int, list[str]]]:
            return await asyncio.gather(
                *(
                    _chat(server.url, c.cookie(), sid, until, durations)
                    for c, sid in zip(chatters, sessions, strict=True)
                )
            )

        started = time.monotonic()
        results = asyncio.run(chats())
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    for _, chat_errors in results:
        errors.extend(chat_errors)
    stored = _stored_turns(sessions)
    lost = dup = 0
    for (sent, _), sid in zip(results, sessions, strict=True):
        numbers = stored[sid]
        dup += len(numbers) - len(set(numbers))
        lost += max(0, sent - len(set(numbers)))
        if sorted(set(numbers)) != list(range(1, len(set(numbers)) + 1)):
            errors.append(f"{sid}: turn numbers {numbers[:10]}... have gaps")
        if len(numbers) != sent:
            errors.append(f"{sid}: {sent} turns completed, {len(numbers)} stored")
    requests = sum(len(v) for v in times.values())
    return {
        "workers": workers,
        "rps": requests / elapsed,
        "times": times,
        "errors": errors,
        "turns": sum(sent for sent, _ in results),
        "turn_times": durations,
        "lost": lost,
        "dup": dup,
    }


def cross_instance(env: dict[str, str], turns: int) -> tuple[int, int]:
    """Chat ``turns`` turns on instance A; count the ``turn_complete`` a viewer on B saw."""
    a, b = Server(env, 1), Server(env, 1)
    try:
        chatter, viewer = Client(a.url, "bench-chat-0"), Client(b.url, "bench")
        quoted = urllib.parse.quote(f"load/cross/{uuid.uuid4().hex[:6]}", safe="")
        return _cross(a, b, chatter, viewer, quoted, turns)
    finally:
        a.stop()
        b.stop()


def _cross(
    a: Server, b: Server, chatter: Client, viewer: Client, quoted: str, turns: int
) -> tuple[int, int]:
    async def go() -> tuple[int, int]:
        async with (
            websockets.connect(
                f"ws://127.0.0.1:{b.port}/ws/sessions/{quoted}/",
                additional_headers={"Cookie": viewer.cookie()},
                origin=b.url,
            ) as watch,
            websockets.connect(
                f"ws://127.0.0.1:{a.port}/ws/chat/{quoted}/",
                additional_headers={"Cookie": chatter.cookie()},
                origin=a.url,
            ) as chat,
        ):
            json.loads(await asyncio.wait_for(chat.recv(), 10))  # ready
            completed = 0
            for n in range(turns):
                await chat.send(json.dumps({"type": "user_message", "text": f"hello {n}"}))
                while (
                    json.loads(await asyncio.wait_for(chat.recv(), 60))["type"] != "turn_complete"
                ):
                    pass
                completed += 1
            seen = 0
            try:
                while seen < completed:
                    message = json.loads(await asyncio.wait_for(watch.recv(), 10))
                    seen += message.get("type") == "turn_complete"
            except TimeoutError:
                pass
            return completed, seen

    return asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default=os.environ.get("BENCH_DATABASE_URL", ""))
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", ""))
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--browsers", type=int, default=8)
    parser.add_argument("--chats", type=int, default=4)
    parser.add_argument("--workers", default="", help="comma-separated (default 1,2 with Redis)")
    parser.add_argument("--cross-turns", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="5 s, 3 browsers, 2 chats")
    parser.add_argument("--workdir", default="")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.browsers, args.chats, args.cross_turns = 5.0, 3, 2, 2
    workers = [int(w) for w in args.workers.split(",") if w] or ([1, 2] if args.redis else [1])
    if any(w > 1 for w in workers) and not args.redis:
        raise SystemExit("more than one worker needs --redis (the shared channel layer)")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="forkview-load-"))
    workdir.mkdir(parents=True, exist_ok=True)
    scratch = ""
    if args.postgres:
        import psycopg

        scratch = f"forkview_load_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{scratch}"')
        parts = urllib.parse.urlsplit(args.postgres)
        database_url = urllib.parse.urlunsplit(parts._replace(path=f"/{scratch}"))
    else:
        database_url = f"sqlite:///{workdir / 'load.sqlite3'}"
    env = _env(database_url, args.redis, workdir / "data")
    try:
        _manage(env, "migrate", "--noinput")
        _manage(env, "seed_demo")
        _manage(env, "createsuperuser", "--noinput", "--username", "bench", "--email", "b@x.org")
        for i in range(args.chats):
            _manage(
                env,
                "createsuperuser",
                "--noinput",
                "--username",
                f"bench-chat-{i}",
                "--email",
                "c@x.org",
            )
        os.environ.update({k: v for k, v in env.items() if k in ("DATABASE_URL", "REDIS_URL")})
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
        import django

        import tests.support.environment  # noqa: F401  (key, plain HTTP for this process)

        django.setup()
        print(
            f"Database: {'PostgreSQL' if args.postgres else 'SQLite'}; channel layer: "
            f"{'Redis' if args.redis else 'in-memory'}; {args.browsers} browsing clients, "
            f"{args.chats} chats, {args.duration:g} s per run"
        )
        results = [run_load(env, w, args, uuid.uuid4().hex[:4]) for w in workers]
        print("\n== Load ==")
        header = f"{'workers':>7}  {'req/s':>7}  " + "  ".join(
            f"{k + ' p50/p95/p99 ms':>26}" for k in PAGES
        )
        print(header + f"  {'turns':>5}  {'turn p50/p95 ms':>16}  {'errors':>6}")
        for r in results:
            cells = "  ".join(
                _spread(r["times"][k], (0.5, 0.95, 0.99), "{:.1f}", 26) for k in PAGES
            )
            print(
                f"{r['workers']:>7}  {r['rps']:7.1f}  {cells}  {r['turns']:>5}  "
                f"{_spread(r['turn_times'], (0.5, 0.95), '{:.0f}', 16)}  {len(r['errors']):>6}"
            )
            for line in r["errors"][:10]:
                print(f"    error: {line}")
        targets: list[tuple[bool, str]] = []
        for r in results:
            targets.append(
                (not r["errors"], f"{r['workers']} worker(s): 0 errors ({len(r['errors'])})")
            )
            targets.append(
                (
                    r["lost"] == 0 and r["dup"] == 0 and r["turns"] > 0,
                    f"{r['workers']} worker(s): every turn stored once ({r['turns']} sent, "
                    f"{r['lost']} lost, {r['dup']} duplicated)",
                )
            )
        if args.redis:
            sent, seen = cross_instance(env, args.cross_turns)
            print(
                f"\n== Two instances (one worker each) ==\n{sent} turns chatted on A, "
                f"{seen} seen by a viewer on B"
            )
            targets.append(
                (
                    sent == args.cross_turns and seen == sent,
                    f"a viewer on instance B saw every turn chatted on A ({seen}/{sent})",
                )
            )
        print("\n== Targets ==")
        for ok, text in targets:
            print(f"{'PASS' if ok else 'FAIL'}  {text}")
        print(f"{sum(ok for ok, _ in targets)}/{len(targets)} targets met")
    finally:
        if "django.db" in sys.modules:
            from django.db import connections

            connections.close_all()
        if scratch:
            import psycopg

            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
