"""Failure drills against a real deployment (issue 13, item 5).

``forkview start`` (the image's entrypoint) serves with two workers on a PostgreSQL cluster
and a Redis server of this module's own (free loopback ports, so they can be stopped and
started again), as ``compose.yaml`` runs them. Each drill breaks one part while pages are
served and a chat turn streams, and checks what a user sees then and afterwards:

- PostgreSQL stopped mid-turn: the turn ends with ``error`` and nothing of it is stored;
  pages and ``/healthz`` answer 503 (a page saying so, no traceback); when PostgreSQL is
  back they work again by themselves and a retry of the turn is stored as turn 1.
- Redis stopped: the chat still answers (the turn locks live in PostgreSQL), the viewers'
  socket stays open and says live updates are paused, then resumes and forwards turns.
- A worker killed (SIGKILL) mid-turn: nothing of the turn is stored, the supervisor starts a
  new worker, and the branch takes the next turn (its lock went with the dead connection).

They need PostgreSQL's and Redis's server binaries, so they run in the PostgreSQL run
(``make test-postgres``), where ``.ci/run`` has installed both.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import websockets

from dashboard.chat.protocol import ERR_DATABASE
from tests.support.served import (
    Visitor,
    chat_turn,
    free_port,
    server_env,
    serving,
    wait_until_healthy,
)

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "pw-drills-123"
SHOTS = Path("/tmp/shots")
#: Slow enough that a turn is still streaming when the drill breaks something (~3 s a turn).
TOKEN_DELAY_MS = "40"

pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
    reason="the failure drills run in the PostgreSQL run (make test-postgres)",
)


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to its own user when we are root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class Postgres:
    """A throwaway cluster: loopback, a free port, durability off."""

    def __init__(self, root: Path) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]))
        self.bin = Path(bins[-1]) if bins else Path(shutil.which("pg_ctl") or "pg_ctl").parent
        self.data = root / "pgdata"
        self.port = free_port()
        self.data.mkdir(mode=0o700)
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust")
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/forkview"

    def _run(self, *command: str) -> None:
        done = subprocess.run(_as_postgres(list(command)), capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data} -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.data / "log"),
                  "-w", "-t", "60", "-o", options, "start")  # fmt: skip

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()


class Redis:
    """A throwaway server: loopback, a free port, no persistence."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "redis"
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        subprocess.run(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--daemonize",
             "yes", "--save", "", "--appendonly", "no", "--dir", str(self.dir),
             "--logfile", str(self.dir / "redis.log")],
            check=True,
        )  # fmt: skip
        self._wait(lambda: self._ping() == "PONG")

    def stop(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], check=False)
        self._wait(lambda: self._ping() != "PONG")

    def _ping(self) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
        )
        return done.stdout.strip()

    @staticmethod
    def _wait(condition: Any, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "redis-server did not change state"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = Path(tempfile.mkdtemp(prefix="forkview-drills-"))
    root.chmod(0o755)  # the postgres user reaches its data directory through it
    pg, redis = Postgres(root), Redis(root)
    pg.start()
    redis.start()
    with psycopg.connect(pg.url.replace("/forkview", "/postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE forkview")
    env = server_env(
        password=PASSWORD,
        DATABASE_URL=pg.url,
        REDIS_URL=redis.url,
        FORKVIEW_WORKERS="2",
        FORKVIEW_DATA_DIR=str(root / "data"),
        FORKVIEW_OFFLINE_TOKEN_DELAY_MS=TOKEN_DELAY_MS,
    )
    port = free_port()
    log_path = tmp_path_factory.mktemp("drills") / "server.log"  # kept, for a failed drill
    start = [sys.executable, "manage.py", "start", "--port", str(port), "--wait", "30"]
    try:
        with serving(start, port=port, cwd=REPO, env=env, log=log_path) as server:
            subprocess.run(
                [sys.executable, "manage.py", "createsuperuser", "--noinput", "--username",
                 "op", "--email", "op@example.com"],
                cwd=REPO, env=env, check=True, capture_output=True, timeout=120,
            )  # fmt: skip
            yield {"url": f"http://127.0.0.1:{port}", "port": port, "server": server,
                   "pg": pg, "redis": redis, "log": log_path}  # fmt: skip
    finally:
        for stop in (redis.stop, pg.stop):
            try:
                stop()
            except AssertionError:
                pass  # already stopped by a failed drill
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def visitor(deployment) -> Visitor:
    # Every drill leaves both services running; wait for the server to be whole again.
    wait_until_healthy(deployment["url"], deployment["server"], 60, deployment["log"])
    visitor = Visitor(deployment["url"])
    visitor.login("op", PASSWORD)
    return visitor


def _ws(deployment: dict[str, Any], path: str, visitor: Visitor) -> Any:
    return websockets.connect(
        f"ws://127.0.0.1:{deployment['port']}{path}",
        additional_headers={"Cookie": visitor.cookie_header()},
        origin=deployment["url"],
    )


async def _recv(ws: Any, timeout: float = 20) -> dict[str, Any]:  # noqa: ASYNC109
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return message


def _chat_path(session_id: str) -> str:
    return f"/ws/chat/{urllib.parse.quote(session_id, safe='')}/"


def _stored(pg: Postgres, session_id: str) -> list[tuple[Any, ...]]:
    """(branch, turn, type) of every stored structure row of the session, in order."""
    return pg.query(
        "SELECT branch_id, branch_turn_number, message_type FROM message_structure"
        " WHERE session_id = %s ORDER BY sequence_number",
        session_id,
    )


def _until(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def test_postgres_restart_mid_turn(deployment, visitor):
    pg: Postgres = deployment["pg"]
    session_id = "drill/postgres-restart"

    async def turn_while_postgres_stops() -> dict[str, Any]:
        async with _ws(deployment, _chat_path(session_id), visitor) as ws:
            assert (await _recv(ws))["type"] == "ready"
            await ws.send(json.dumps({"type": "user_message", "text": "hello there"}))
            while (message := await _recv(ws))["type"] != "delta":
                pass
            await asyncio.to_thread(pg.stop)  # the turn is streaming: it cannot be stored
            while (message := await _recv(ws, 60))["type"] not in ("turn_complete", "error"):
                pass
            return message

    try:
        assert asyncio.run(turn_while_postgres_stops()) == {
            "type": "error",
            "message": ERR_DATABASE,
        }
        for path in ("/", f"/sessions/{urllib.parse.quote(session_id, safe='')}/", "/chat/new/"):
            status, content_type, body = visitor.get(path)
            assert status == 503, (path, status, body[:300])
            assert content_type.startswith("text/html")
            assert "temporarily unavailable" in body and "Traceback" not in body
        assert visitor.get("/healthz")[0] == 503
    finally:
        pg.start()

    # Back by themselves (each worker's pool replaces its dead connections), no restart.
    _until(lambda: visitor.get("/")[0] == 200, 30, "the session list after the restart")
    _until(
        lambda: all(visitor.get("/healthz")[0] == 200 for _ in range(6)),  # on both workers
        30,
        "/healthz after the restart",
    )
    assert _stored(pg, session_id) == []  # nothing half-written
    assert pg.query("SELECT count(*) FROM turn_usage WHERE session_id = %s", session_id) == [(0,)]
    retry = chat_turn(deployment["url"], visitor.cookie_header(), session_id, "hello there")
    assert retry[-1]["type"] == "turn_complete" and retry[-1]["turn"] == 1, retry[-3:]
    assert _stored(pg, session_id) == [("main", 1, "user"), ("main", 1, "assistant")]


def test_redis_outage_pauses_live_updates_but_not_the_chat(deployment, visitor):
    redis: Redis = deployment["redis"]
    session_id = "drill/redis-outage"
    quoted = urllib.parse.quote(session_id, safe="")

    async def drill() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with _ws(deployment, f"/ws/sessions/{quoted}/", visitor) as viewer:
            first = await asyncio.to_thread(
                chat_turn, deployment["url"], visitor.cookie_header(), session_id, "one"
            )
            seen["before"] = await _recv(viewer)
            try:
                await asyncio.to_thread(redis.stop)
                seen["paused"] = await _recv(viewer)
                seen["during"] = await asyncio.to_thread(
                    chat_turn, deployment["url"], visitor.cookie_header(), session_id, "two"
                )
                seen["page"] = (await asyncio.to_thread(visitor.get, f"/sessions/{quoted}/"))[0]
                seen["healthz"] = (await asyncio.to_thread(visitor.get, "/healthz"))[0]
            finally:
                await asyncio.to_thread(redis.start)
            seen["resumed"] = await _recv(viewer, 30)
            third = await asyncio.to_thread(
                chat_turn, deployment["url"], visitor.cookie_header(), session_id, "three"
            )
            seen["after"] = await _recv(viewer)
            seen["turns"] = [first[-1], third[-1]]
        return seen

    seen = asyncio.run(drill())
    assert seen["before"]["type"] == "turn_complete" and seen["before"]["turn"] == 1
    assert seen["paused"] == {"type": "live_status", "live": False}
    assert seen["during"][-1]["type"] == "turn_complete", seen["during"][-3:]  # still answers
    assert seen["during"][-1]["turn"] == 2
    assert seen["page"] == 200  # pages need no Redis
    assert seen["healthz"] == 503  # the health check reports the broken channel layer
    assert seen["resumed"] == {"type": "live_status", "live": True}
    assert seen["after"]["type"] == "turn_complete" and seen["after"]["turn"] == 3
    turns = [row[1] for row in _stored(deployment["pg"], session_id) if row[2] == "user"]
    assert turns == [1, 2, 3]


def test_the_session_page_shows_live_updates_paused_then_back(deployment, visitor):
    """The same outage in headless Chromium: what a reviewer on the session page sees."""
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM_ARGS

    redis: Redis = deployment["redis"]
    session_id = "drill/redis-browser"
    chat_turn(deployment["url"], visitor.cookie_header(), session_id, "one")
    cookies = [{"name": c.name, "value": c.value, "url": deployment["url"]} for c in visitor.jar]
    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"),
            args=CHROMIUM_ARGS,
        )
        try:
            context = browser.new_context()
            context.add_cookies(cookies)  # type: ignore[arg-type]
            page = context.new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{deployment['url']}/sessions/{urllib.parse.quote(session_id, safe='')}/")
            page.wait_for_function(
                "() => document.getElementById('live-updates').dataset.connected === '1'"
            )
            try:
                redis.stop()
                page.locator("#live-updates.live-paused").wait_for()
                assert "Live updates are paused" in page.inner_text("#live-updates")
                page.screenshot(path=str(SHOTS / "drill_live_paused.png"))
                # Playwright's sync API holds this thread's event loop: chat from another.
                with concurrent.futures.ThreadPoolExecutor(1) as other:
                    turn = other.submit(
                        chat_turn, deployment["url"], visitor.cookie_header(), session_id, "two"
                    ).result()
                assert turn[-1]["type"] == "turn_complete", turn[-3:]
            finally:
                redis.start()
            page.locator("#live-resumed").wait_for()
            page.screenshot(path=str(SHOTS / "drill_live_back.png"))
            page.locator("#live-resumed").click()
            page.wait_for_load_state()
            assert page.locator("article.turn[data-turn]").count() == 2  # the turn made meanwhile
        finally:
            browser.close()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _worker_serving(server_pid: int, server_port: int, client_port: int) -> int:
    """The worker process holding the server side of the connection from ``client_port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)) == (
                server_port,
                client_port,
            ):
                inodes.add(f"socket:[{inode}]")
    for pid in _children(server_pid):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) in inodes:
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def test_worker_killed_mid_turn(deployment, visitor):
    pg: Postgres = deployment["pg"]
    server: subprocess.Popen[str] = deployment["server"]
    session_id = "drill/worker-killed"
    workers_before = set(_children(server.pid))
    assert len(workers_before) >= 2

    async def turn_while_its_worker_dies() -> tuple[int, BaseException | None]:
        async with _ws(deployment, _chat_path(session_id), visitor) as ws:
            assert (await _recv(ws))["type"] == "ready"
            await ws.send(json.dumps({"type": "user_message", "text": "hello there"}))
            while (await _recv(ws))["type"] != "delta":
                pass
            client_port = ws.local_address[1]
            victim = _worker_serving(server.pid, deployment["port"], client_port)
            os.kill(victim, signal.SIGKILL)
            try:
                while True:
                    await _recv(ws)
            except websockets.ConnectionClosed as exc:
                return victim, exc

    victim, closed = asyncio.run(turn_while_its_worker_dies())
    assert isinstance(closed, websockets.ConnectionClosed)
    assert _stored(pg, session_id) == []  # the turn died with its worker, whole
    # The supervisor replaces the dead worker.
    _until(
        lambda: victim not in _children(server.pid) and len(_children(server.pid)) >= 2,
        30,
        "a new worker",
    )
    retry = chat_turn(deployment["url"], visitor.cookie_header(), session_id, "hello there")
    assert retry[-1]["type"] == "turn_complete" and retry[-1]["turn"] == 1, retry[-3:]
    assert _stored(pg, session_id) == [("main", 1, "user"), ("main", 1, "assistant")]
    assert server.poll() is None
