"""Benchmark: the live chat's cost per turn, and 50 concurrent chats on one server process.

Run from the repository root::

    .venv/bin/python bench/chat_bench.py --quick        # smoke run (< 30 s)
    .venv/bin/python bench/chat_bench.py                # ~1-2 min
    .venv/bin/python bench/chat_bench.py --postgres postgres://u:p@127.0.0.1:5432/db

Both parts run the demo agent (``dashboard.agents.demo_agent``: its four tools) on the
offline model (``dashboard.demo.model``); ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` are
ignored, and ``REDIS_URL`` too unless ``--redis`` is given (in-memory channel layer, turn
guard on the database). The bench makes its own scratch database (a SQLite file in a temp
folder, or a scratch database on the PostgreSQL server, dropped at the end).

1. Overhead per turn, in process, token delay 0: a turn through the real ASGI application
   (``dashboard.asgi.application``: origin check, session-cookie auth, routing,
   ``ChatConsumer``, turn guard, ``run_turn``, viewer notification), timed by a
   ``WebsocketCommunicator`` client from sending ``user_message`` to reading
   ``turn_complete``, against ``Runner.run_streamed(agent, text, session=DjangoSession(...))``
   consuming every event, plus ``store_run_usage``: the same agent, model, run config and
   database. The communicator, not a socket, because the target is the chat path's own cost:
   both contenders then run in one process and one event loop with no network, and the
   difference is Forkview's code, not TCP, websocket framing or a second process's
   scheduling (part 2 has those). Rounds interleave the two, in alternating order, for a
   text reply and for a tool call + reply. Target: median overhead <= 5 ms.
2. Concurrency over a real server: one daphne process (``daphne dashboard.asgi:application``
   on 127.0.0.1, as ``make run`` serves it), 50 websocket clients (the ``websockets``
   library, in this process), each on its own session, each sending N turns back to back
   (no think time: the server is never idle), with the offline model's normal token delay
   (``FORKVIEW_OFFLINE_TOKEN_DELAY_MS``, 12 ms; ``--token-delay-ms``). Reported: time to
   first delta and turn duration (p50 / p95), then a storage check: every session has
   exactly N user turns, turn numbers 1..N, each message stored once, usage on every turn.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
import tests.support.environment  # noqa: E402, F401  (the tests' key and plain-HTTP settings)

TURN_TIMEOUT = 120  # seconds one turn may take before the bench gives up
OVERHEAD_TARGET_MS = 5.0
TEXT_MESSAGE = "Hello there, how are you today?"  # the offline model's small talk (~60 tokens)
TOOL_MESSAGE = "calculate (12+30)*7"  # a calculate call, its output, then the answer


@dataclass
class Plan:
    warmup: int  # unrecorded rounds of part 1
    rounds: int  # recorded rounds of part 1 (each: 2 kinds x 2 contenders)
    rotate: int  # part 1 moves to fresh sessions every this many rounds
    chats: int  # part 2 sockets
    turns: int  # part 2 turns per socket


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        plan = Plan(warmup=2, rounds=8, rotate=8, chats=20, turns=2)
    else:
        plan = Plan(warmup=4, rounds=100, rotate=20, chats=50, turns=16)
    if args.chats:
        plan.chats = args.chats
    if args.turns:
        plan.turns = args.turns
    return plan


# ---- setup ----------------------------------------------------------------------------------


def configure(args: argparse.Namespace, workdir: Path) -> str | None:
    """Set the environment Django reads, before it is set up; return a PG database to drop."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "FORKVIEW_AGENT", "REDIS_URL"):
        os.environ.pop(name, None)
    if args.redis:
        os.environ["REDIS_URL"] = args.redis
    os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
    os.environ["DJANGO_LOG_LEVEL"] = "ERROR"
    if args.postgres:
        name = f"forkview_chat_bench_{os.getpid()}"
        pg_admin(args.postgres, [f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"'])
        os.environ["DATABASE_URL"] = urlunsplit(urlsplit(args.postgres)._replace(path=f"/{name}"))
        return name
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'chat.sqlite3'}"
    return None


def pg_admin(url: str, statements: list[str]) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def login_cookie(username: str = "chat-bench") -> str:
    """A session cookie of a user who may chat (the real auth path, not a scope override)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    from conversations.permissions import APP_LABEL, CHAT_CODENAME, VIEW_CODENAME
    from tests.support.auth import cookie_header

    user, _ = get_user_model().objects.get_or_create(username=username)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label=APP_LABEL, codename__in=[CHAT_CODENAME, VIEW_CODENAME]
        )
    )
    return cookie_header(user)


# ---- statistics and tables ------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def fmt(ms: float) -> str:
    return f"{ms:.3f}" if abs(ms) < 1 else f"{ms:.2f}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    print(line(headers))
    print("-" * len(line(headers)))
    for row in rows:
        print(line(row))


# ---- part 1: overhead per turn --------------------------------------------------------------


class ChatClient:
    """A ``WebsocketCommunicator`` on ``/ws/chat/<session>/`` through the whole ASGI app.

    Frames are read straight off the communicator's output queue: its ``receive_json_from``
    wraps every frame in ``wait_for`` (a task and a timer each), client cost that would be
    billed to the chat path. One deadline covers the whole turn instead.
    """

    def __init__(self, session_id: str, cookie: str) -> None:
        from channels.testing import WebsocketCommunicator

        from dashboard.asgi import application

        headers = [
            (b"origin", b"http://127.0.0.1"),
            (b"host", b"127.0.0.1"),
            (b"cookie", cookie.encode()),
        ]
        path = f"/ws/chat/{quote(session_id, safe='')}/"
        self.communicator = WebsocketCommunicator(application, path, headers=headers)
        self.frames: list[int] = []  # frames received per turn

    async def open(self) -> None:
        connected, _ = await self.communicator.connect(timeout=30)
        if not connected:
            raise RuntimeError("the chat socket was refused")
        ready = await self.communicator.receive_json_from(timeout=30)
        if ready.get("type") != "ready":
            raise RuntimeError(f"expected ready, got {ready}")

    async def turn(self, text: str) -> float:
        """One turn; its ms from sending the message to reading ``turn_complete``."""
        queue = self.communicator.output_queue
        frames = 0
        started = time.perf_counter()
        await self.communicator.send_json_to({"type": "user_message", "text": text})
        async with asyncio.timeout(TURN_TIMEOUT):
            while True:
                frame = await queue.get()
                frames += 1
                if frame.get("type") != "websocket.send":
                    raise RuntimeError(f"socket closed mid-turn: {frame}")
                message = json.loads(frame["text"])
                if message["type"] == "turn_complete":
                    elapsed = (time.perf_counter() - started) * 1000
                    self.frames.append(frames)
                    return elapsed
                if message["type"] in ("error", "busy"):
                    raise RuntimeError(f"chat turn failed: {message}")

    async def close(self) -> None:
        await self.communicator.disconnect()


class DirectClient:
    """The same turn with the SDK alone: ``Runner.run_streamed`` on a ``DjangoSession``."""

    def __init__(self, session_id: str, agent: Any, run_config: Any) -> None:
        self.session_id = session_id
        self.agent = agent
        self.run_config = run_config

    async def turn(self, text: str) -> float:
        from agents import Runner

        from conversations.session import DjangoSession

        started = time.perf_counter()
        session = DjangoSession(session_id=self.session_id)
        result = Runner.run_streamed(self.agent, text, session=session, run_config=self.run_config)
        async for _ in result.stream_events():
            pass
        await session.store_run_usage(result)
        return (time.perf_counter() - started) * 1000


@dataclass
class OverheadResult:
    samples: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (kind, path)
    pairs: dict[str, list[float]] = field(default_factory=dict)  # kind -> chat - direct
    frames: dict[str, int] = field(default_factory=dict)  # kind -> websocket frames per turn


async def measure_overhead(plan: Plan, cookie: str) -> OverheadResult:
    from dashboard.agents import get_agent, run_config

    agent = get_agent()  # the configured agent, built once, as a script would
    config = run_config(agent)  # the chat's run config (tracing off without OpenAI)
    kinds = {"text reply": TEXT_MESSAGE, "tool call + reply": TOOL_MESSAGE}
    result = OverheadResult()
    chat: ChatClient | None = None
    direct: DirectClient | None = None
    try:
        for r in range(plan.warmup + plan.rounds):
            if r % plan.rotate == 0:  # fresh sessions: history (read every turn) stays short
                if chat is not None:
                    await chat.close()
                chat = ChatClient(f"bench/chat {r}", cookie)
                await chat.open()
                direct = DirectClient(f"bench/direct {r}", agent, config)
            assert chat is not None and direct is not None
            for kind, text in kinds.items():
                order: list[tuple[str, Callable[[str], Awaitable[float]]]] = [
                    ("chat", chat.turn),
                    ("direct", direct.turn),
                ]
                if r % 2:
                    order.reverse()
                times = {name: await run(text) for name, run in order}
                if r >= plan.warmup:
                    for name, ms in times.items():
                        result.samples.setdefault((kind, name), []).append(ms)
                    result.pairs.setdefault(kind, []).append(times["chat"] - times["direct"])
                    result.frames[kind] = chat.frames[-1]
    finally:
        if chat is not None:
            await chat.close()
    return result


def report_overhead(plan: Plan, result: OverheadResult) -> list[tuple[str, bool]]:
    print(
        f"\n== 1. Chat path overhead per turn (in process, token delay 0), "
        f"median of {plan.rounds} paired rounds (ms) =="
    )
    rows, checks = [], []
    for kind, pairs in result.pairs.items():
        chat = statistics.median(result.samples[(kind, "chat")])
        direct = statistics.median(result.samples[(kind, "direct")])
        overhead = statistics.median(pairs)
        ok = overhead <= OVERHEAD_TARGET_MS
        checks.append((f"{kind}: chat overhead {fmt(overhead)} ms <= {OVERHEAD_TARGET_MS} ms", ok))
        rows.append(
            [
                kind,
                str(result.frames[kind]),
                fmt(direct),
                fmt(chat),
                fmt(overhead),
                fmt(percentile(pairs, 90)),
                f"{chat / direct:.2f}x",
                f"<= {OVERHEAD_TARGET_MS:g} ms",
                verdict(ok),
            ]
        )
    headers = [
        "turn",
        "frames",
        "direct",
        "chat",
        "overhead",
        "p90 ovh",
        "chat/direct",
        "target",
        "result",
    ]
    print_table(headers, rows)
    print(
        "direct = Runner.run_streamed on a DjangoSession + every event + store_run_usage;\n"
        "chat = user_message -> turn_complete through dashboard.asgi.application (frames = "
        "websocket messages per turn);\noverhead = median of the per-round (chat - direct). "
        "The chat stores a turn in one add_items transaction,\nthe direct Runner writes after "
        "each step (user input, tool step, answer): a tool turn costs the chat fewer commits."
    )
    return checks


# ---- part 2: concurrent chats on a daphne server --------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int, token_delay_ms: float, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FORKVIEW_OFFLINE_TOKEN_DELAY_MS": f"{token_delay_ms:g}"}
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
            + ["dashboard.asgi:application"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"daphne exited: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("daphne did not start listening within 60 s")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def chat_text(chat: int, turn: int) -> str:
    """A unique message per (chat, turn): every third one calls a tool."""
    if turn % 3 == 2:
        return f"calculate {chat}*{turn}+1"
    return f"chat {chat} turn {turn}: hello there"


@dataclass
class ChatRun:
    first_delta_ms: list[float] = field(default_factory=list)
    turn_ms: list[float] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)  # turn numbers in turn_complete
    error: str = ""


class StartLine:
    """Every client connects first; the clock starts when all of them are ready (or failed)."""

    def __init__(self, clients: int) -> None:
        self.waiting = clients
        self.all_in = asyncio.Event()
        self.go = asyncio.Event()

    def arrived(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.all_in.set()


async def one_chat(
    url: str, headers: dict[str, str], chat: int, turns: int, line: StartLine
) -> ChatRun:
    from websockets.asyncio.client import connect

    run = ChatRun()
    arrived = False
    try:
        async with connect(url, additional_headers=headers, max_size=None) as ws:
            ready = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if ready.get("type") != "ready":
                raise RuntimeError(f"expected ready, got {ready}")
            arrived = True
            line.arrived()
            await line.go.wait()
            for turn in range(turns):
                started = time.perf_counter()
                await ws.send(json.dumps({"type": "user_message", "text": chat_text(chat, turn)}))
                first = None
                async with asyncio.timeout(TURN_TIMEOUT):
                    while True:
                        message = json.loads(await ws.recv())
                        if message["type"] == "delta" and first is None:
                            first = time.perf_counter()
                        elif message["type"] == "turn_complete":
                            break
                        elif message["type"] in ("error", "busy"):
                            raise RuntimeError(f"turn {turn}: {message}")
                done = time.perf_counter()
                run.turn_ms.append((done - started) * 1000)
                if first is not None:
                    run.first_delta_ms.append((first - started) * 1000)
                run.completed.append(message["turn"])
    except Exception as exc:  # reported per chat; the storage check still runs
        run.error = f"{type(exc).__name__}: {exc}"
    finally:
        if not arrived:
            line.arrived()
    return run


async def run_chats(port: int, cookies: list[str], plan: Plan) -> tuple[list[ChatRun], float]:
    """One chat per cookie: distinct users, as a team's reviewers (one user is capped at
    ``FORKVIEW_MAX_TURNS_PER_USER`` turns at once)."""
    line = StartLine(plan.chats)
    tasks = [
        asyncio.ensure_future(
            one_chat(
                f"ws://127.0.0.1:{port}/ws/chat/bench-live-{i:03d}/",
                {"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"},
                i,
                plan.turns,
                line,
            )
        )
        for i, cookie in enumerate(cookies)
    ]
    await asyncio.wait_for(line.all_in.wait(), 120)
    started = time.perf_counter()
    line.go.set()
    runs = list(await asyncio.gather(*tasks))
    return runs, time.perf_counter() - started


def check_storage(plan: Plan) -> list[tuple[str, bool, str]]:
    """(check, ok, detail) for every session of part 2, read back through the ORM."""
    from django.db.models import Count

    from conversations.models import AgentMessage, MessageStructure, TurnUsage

    sessions = [f"bench-live-{i:03d}" for i in range(plan.chats)]
    expected = list(range(1, plan.turns + 1))
    bad_turns, bad_messages, bad_usage, bad_items = [], [], [], []
    for i, sid in enumerate(sessions):
        turns = sorted(
            MessageStructure.objects.filter(
                session_id=sid, branch_id="main", message_type="user"
            ).values_list("branch_turn_number", flat=True)
        )
        if turns != expected:
            bad_turns.append(f"{sid}: {turns}")
        texts = sorted(
            data.get("content")
            for data in AgentMessage.objects.filter(session_id=sid).values_list(
                "message_data", flat=True
            )
            if isinstance(data, dict) and data.get("role") == "user"
        )
        if texts != sorted(chat_text(i, t) for t in range(plan.turns)):
            bad_messages.append(f"{sid}: {len(texts)} user messages")
        usage = sorted(
            TurnUsage.objects.filter(session_id=sid, branch_id="main").values_list(
                "user_turn_number", flat=True
            )
        )
        if usage != expected:
            bad_usage.append(f"{sid}: {usage}")
    # Each stored message is on main exactly once (no turn stored twice, none half-stored).
    dupes = (
        MessageStructure.objects.filter(session_id__in=sessions)
        .values("message_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    if dupes:
        bad_items.append(f"{dupes} messages in message_structure more than once")
    n = plan.chats
    return [
        (
            f"user turns per session == {plan.turns}, numbered 1..{plan.turns}",
            not bad_turns,
            "; ".join(bad_turns[:3]),
        ),
        (
            f"user messages per session == {plan.turns}, each sent text once",
            not bad_messages,
            "; ".join(bad_messages[:3]),
        ),
        (f"turn_usage rows per session == {plan.turns}", not bad_usage, "; ".join(bad_usage[:3])),
        ("no message in message_structure twice", not bad_items, "; ".join(bad_items)),
        (f"sessions checked: {n}", True, ""),
    ]


def report_concurrency(
    plan: Plan,
    runs: list[ChatRun],
    wall_s: float,
    token_delay_ms: float,
    storage: list[tuple[str, bool, str]],
    server_errors: list[str],
) -> list[tuple[str, bool]]:
    firsts = [ms for run in runs for ms in run.first_delta_ms]
    turns = [ms for run in runs for ms in run.turn_ms]
    done = len(turns)
    sent = plan.chats * plan.turns
    print(
        f"\n== 2. {plan.chats} concurrent chats on one daphne process, {plan.turns} turns each, "
        f"offline model with {token_delay_ms:g} ms per token (ms) =="
    )
    rows = []
    if turns:
        rows.append(
            [
                "time to first delta",
                fmt(percentile(firsts, 50)),
                fmt(percentile(firsts, 95)),
                fmt(max(firsts)),
                str(len(firsts)),
            ]
        )
        rows.append(
            [
                "turn duration",
                fmt(percentile(turns, 50)),
                fmt(percentile(turns, 95)),
                fmt(max(turns)),
                str(done),
            ]
        )
    print_table(["", "p50", "p95", "max", "samples"], rows or [["(no turn completed)"] + [""] * 4])
    print(
        f"{done}/{sent} turns completed in {wall_s:.1f} s ({done / wall_s:.1f} turns/s); "
        "each client sends its next message as soon as turn_complete arrives."
    )
    errors = [f"chat {i}: {run.error}" for i, run in enumerate(runs) if run.error]
    numbering = all(run.completed == list(range(1, len(run.completed) + 1)) for run in runs)
    checks = [
        (f"all {sent} turns completed without error", done == sent and not errors),
        ("turn_complete numbers 1..N on every socket", numbering),
        ("server log free of errors and tracebacks", not server_errors),
    ]
    print("\n-- storage check after the run (read back from the database) --")
    for label, ok, detail in storage:
        if label.startswith("sessions checked"):
            print(label)
            continue
        print(f"{verdict(ok)}  {label}" + (f"  [{detail}]" if detail else ""))
        checks.append((f"storage: {label}", ok))
    for line in (errors + server_errors)[:5]:
        print(f"  ! {line}")
    return checks


def server_problems(log: Path) -> list[str]:
    text = log.read_text(errors="replace")
    keep = ("Traceback", "ERROR", "database is locked", "Exception")
    return [line.strip() for line in text.splitlines() if any(k in line for k in keep)]


# ---- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (< 30 s)")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_DATABASE_URL", ""),
        help="PostgreSQL URL (default: $BENCH_DATABASE_URL); a scratch database is created",
    )
    parser.add_argument("--redis", default="", help="REDIS_URL for the layer and turn guard")
    parser.add_argument("--chats", type=int, default=0, help="part 2 sockets (default 50)")
    parser.add_argument("--turns", type=int, default=0, help="part 2 turns per socket")
    parser.add_argument(
        "--token-delay-ms",
        type=float,
        default=None,
        help="part 2 offline model delay per token (default: the settings' 12 ms)",
    )
    parser.add_argument("--workdir", default="", help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    if args.postgres and not args.postgres.startswith(("postgres://", "postgresql://")):
        parser.error("--postgres must be a postgres:// URL")
    plan = make_plan(args)
    started = time.perf_counter()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="forkview-chat-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    drop = configure(args, workdir)

    import django

    # WhiteNoise's "no STATIC_ROOT" warning: the bench serves no static files.
    warnings.filterwarnings("ignore", message="No directory at")
    django.setup()
    from asgiref.sync import sync_to_async
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection, connections

    from dashboard.chat.locks import lock_backend

    # Part 1 streams with no delay (in process); part 2's server keeps the configured one.
    token_delay = args.token_delay_ms
    if token_delay is None:
        token_delay = float(settings.FORKVIEW_OFFLINE_TOKEN_DELAY_MS)
    settings.FORKVIEW_OFFLINE_TOKEN_DELAY_MS = 0.0
    checks: list[tuple[str, bool]] = []
    server = None
    try:
        call_command("migrate", verbosity=0)
        cookie = login_cookie()
        vendor = connection.vendor
        print("\nForkview chat benchmark: live chat vs the SDK's Runner, and concurrent chats")
        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, database {vendor}, "
            f"channel layer {settings.CHANNEL_LAYERS['default']['BACKEND'].rsplit('.', 1)[-1]}, "
            f"turn guard {lock_backend()}, quick={args.quick}"
        )

        async def part1() -> OverheadResult:
            try:
                return await measure_overhead(plan, cookie)
            finally:
                await sync_to_async(connections.close_all)()

        print("part 1: measuring overhead...", file=sys.stderr, flush=True)
        overhead = asyncio.run(part1())
        checks += report_overhead(plan, overhead)

        print("part 2: starting daphne...", file=sys.stderr, flush=True)
        cookies = [login_cookie(f"chat-bench-{i:03d}") for i in range(plan.chats)]
        connections.close_all()
        port = free_port()
        log = workdir / "daphne.log"
        server = start_server(port, token_delay, log)
        print(f"part 2: {plan.chats} chats x {plan.turns} turns...", file=sys.stderr, flush=True)
        runs, wall_s = asyncio.run(run_chats(port, cookies, plan))
        stop_server(server)
        storage = check_storage(plan)
        checks += report_concurrency(plan, runs, wall_s, token_delay, storage, server_problems(log))
    finally:
        if server is not None:
            stop_server(server)
        connections.close_all()
        if drop:
            pg_admin(args.postgres, [f'DROP DATABASE IF EXISTS "{drop}" WITH (FORCE)'])
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    print("\n== Targets ==")
    for label, ok in checks:
        print(f"{verdict(ok)}  {label}")
    print(f"{sum(ok for _, ok in checks)}/{len(checks)} targets met")
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
    # Speed targets only print; a lost, failed or doubly stored turn fails the run.
    broken = [label for label, ok in checks if not ok and "overhead" not in label]
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
