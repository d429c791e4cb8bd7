"""The deployment's entrypoint, outside a container (issue 13, item 3).

``forkview start`` is what the image runs (``Dockerfile``: ``ENTRYPOINT forkview``, ``CMD
start``; ``compose.yaml`` adds PostgreSQL and Redis): wait for the database, migrate an empty
one, serve with ``FORKVIEW_WORKERS`` processes. Here it runs against what this suite runs on:
a fresh PostgreSQL database with Redis and two workers in the PostgreSQL run, a fresh SQLite
file with one worker otherwise; a viewer's socket sees the turn a chat socket ran.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tomllib
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.support.served import Visitor, free_port, server_env, serving

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "pw-deploy-123"


def _clean_env(**settings: str) -> dict[str, str]:
    return server_env(password=PASSWORD, **settings)


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> Iterator[dict[str, str]]:
    """An empty database of the suite's kind, and the channel layer to use with it."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        path = tmp_path_factory.mktemp("deploy") / "forkview.sqlite3"
        yield {"DATABASE_URL": f"sqlite:///{path}", "workers": "1"}
        return
    import psycopg

    parts = urllib.parse.urlsplit(url)
    name = f"forkview_deploy_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        setting = {"DATABASE_URL": urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))}
        if os.environ.get("REDIS_URL"):
            setting.update(REDIS_URL=os.environ["REDIS_URL"], workers="2")
        else:
            setting["workers"] = "1"
        yield setting
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def deployment(database, tmp_path_factory) -> Iterator[dict[str, Any]]:
    data = tmp_path_factory.mktemp("deploy-data")
    settings = {k: v for k, v in database.items() if k != "workers"}
    env = _clean_env(FORKVIEW_DATA_DIR=str(data), FORKVIEW_WORKERS=database["workers"], **settings)
    port = free_port()
    start = [sys.executable, "manage.py", "start", "--port", str(port), "--wait", "30"]
    with serving(start, port=port, cwd=REPO, env=env):
        done = subprocess.run(
            [sys.executable, "manage.py", "createsuperuser", "--noinput", "--username", "op"]
            + ["--email", "op@example.com"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        yield {"url": f"http://127.0.0.1:{port}", "workers": int(database["workers"])}


def test_start_migrated_an_empty_database_and_serves(deployment):
    visitor = Visitor(deployment["url"])
    visitor.login("op", PASSWORD)
    for path in ("/", "/chat/new/", "/admin/"):
        status, _, body = visitor.get(path)
        assert status == 200 and "Traceback" not in body, path


def test_viewers_see_the_turn_a_chat_ran_on_any_worker(deployment):
    visitor = Visitor(deployment["url"])
    visitor.login("op", PASSWORD)
    cookie, origin = visitor.cookie_header(), deployment["url"]
    port = urllib.parse.urlsplit(origin).port
    session = urllib.parse.quote("deploy/live", safe="")

    async def run() -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
        headers = {"Cookie": cookie}
        viewers = [
            await websockets.connect(
                f"ws://127.0.0.1:{port}/ws/sessions/{session}/",
                additional_headers=headers,
                origin=origin,
            )
            for _ in range(4)  # several connections: with two workers they spread over both
        ]
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws/chat/{session}/", additional_headers=headers, origin=origin
        ) as chat:
            sent = [json.loads(await asyncio.wait_for(chat.recv(), 10))]
            await chat.send(json.dumps({"type": "user_message", "text": "what time is it"}))
            while sent[-1]["type"] not in ("turn_complete", "error"):
                sent.append(json.loads(await asyncio.wait_for(chat.recv(), 30)))
        seen = []
        for ws in viewers:
            got: list[dict[str, Any]] = []
            while not got or got[-1].get("type") != "turn_complete":
                got.append(json.loads(await asyncio.wait_for(ws.recv(), 15)))
            seen.append(got)
            await ws.close()
        return sent, seen

    sent, seen = asyncio.run(run())
    assert sent[-1]["type"] == "turn_complete", sent[-3:]
    for got in seen:
        assert got[-1]["turn"] == sent[-1]["turn"] and got[-1]["branch_id"] == "main"


def test_start_gives_up_on_an_unreachable_database_with_one_line(tmp_path):
    env = _clean_env(
        FORKVIEW_DATA_DIR=str(tmp_path), DATABASE_URL="postgres://nobody:x@127.0.0.1:9/none"
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "start", "--wait", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("CommandError: The database did not answer")
    assert done.stderr.count("\n") == 1, done.stderr


def test_the_image_and_the_compose_file_run_what_these_tests_run():
    """The Dockerfile's entrypoint is this module's ``forkview start``, installed at the locked
    versions; every variable compose.yaml sets is one the README documents."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["forkview"]' in dockerfile and 'CMD ["start"]' in dockerfile
    assert "-c /tmp/forkview/requirements.lock" in dockerfile
    assert "USER forkview" in dockerfile  # not root
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["forkview"] == "dashboard.cli:main"
    readme = (REPO / "README.md").read_text()
    compose = (REPO / "compose.yaml").read_text()
    service = compose.split("\n  forkview:\n", 1)[1].split("\nvolumes:", 1)[0]
    variables = re.findall(r"^ {6}([A-Z][A-Z0-9_]+):", service, flags=re.MULTILINE)
    assert "DATABASE_URL" in variables and "REDIS_URL" in variables
    undocumented = [name for name in variables if f"`{name}`" not in readme]
    assert not undocumented, undocumented
