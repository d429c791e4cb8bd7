"""Talking to a Forkview server started as its own process (``forkview serve``/``start``), as a
browser and an operator would: a logged-in HTTP client, a health wait, a chat turn over the
served websocket."""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

__all__ = ["Visitor", "chat_turn", "free_port", "server_env", "serving", "wait_until_healthy"]

#: Only what a test names reaches the server: none of the caller's settings variables.
_SETTINGS_PREFIXES = ("DJANGO_", "FORKVIEW_", "DATABASE_URL", "REDIS_URL", "OPENAI_")


def server_env(*, password: str, **settings: str) -> dict[str, str]:
    """The environment of a served Forkview: this process's, minus its settings, plus a
    secret key, the documented plain-HTTP opt-outs (a private loopback network), the
    offline model at full speed, ``password`` for ``createsuperuser --noinput``, and
    ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SETTINGS_PREFIXES)}
    env.update(
        DJANGO_SECRET_KEY="served-test-" + "s3cr3t" * 10,
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_SESSION_COOKIE_SECURE="false",
        DJANGO_CSRF_COOKIE_SECURE="false",
        DJANGO_SECURE_HSTS_SECONDS="0",
        FORKVIEW_OFFLINE_TOKEN_DELAY_MS="0",
        DJANGO_SUPERUSER_PASSWORD=password,
    )
    env.update(settings)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(
    base_url: str, server: subprocess.Popen[str], timeout: float = 90, log: Path | None = None
) -> None:
    """Until ``/healthz`` answers 200; fails with the server's output (its piped stdout, or
    the ``log`` file it writes) if it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            output = server.stdout.read() if server.stdout else ""
            if log is not None:
                output += log.read_text(errors="replace")
            pytest.fail(f"the server did not start:\n{output[-3000:]}")
        time.sleep(0.2)


@contextlib.contextmanager
def serving(
    argv: list[str], *, port: int, cwd: Path, env: dict[str, str], log: Path | None = None
) -> Iterator[subprocess.Popen[str]]:
    """Run a server command (``forkview serve``/``start``) until it is healthy on ``port``;
    stop it afterwards. Its output goes to ``log`` (a long-lived server's log can outgrow a
    pipe's buffer and block it), else to a pipe read on failure."""
    with contextlib.ExitStack() as stack:
        out: Any = stack.enter_context(log.open("w")) if log is not None else subprocess.PIPE
        server = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
        try:
            wait_until_healthy(f"http://127.0.0.1:{port}", server, log=log)
            yield server
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


class Visitor:
    """A cookie-keeping HTTP client that logs in through the real login form."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str) -> tuple[int, str, str]:
        try:
            with self.opener.open(self.base_url + path, timeout=30) as response:
                body = response.read().decode()
                return response.status, response.headers.get("Content-Type", ""), body
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()

    def login(self, username: str, password: str) -> None:
        _, _, page = self.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, page[:500]
        data = urllib.parse.urlencode(
            {"username": username, "password": password, "csrfmiddlewaretoken": token.group(1)}
        ).encode()
        request = urllib.request.Request(
            self.base_url + "/accounts/login/", data=data, headers={"Referer": self.base_url + "/"}
        )
        with self.opener.open(request, timeout=30) as response:
            assert response.status == 200 and "/accounts/login/" not in response.url

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


def chat_turn(
    base_url: str, cookie: str, session_id: str, text: str, timeout: float = 30
) -> list[dict[str, Any]]:
    """Every message of one chat turn over ``/ws/chat/<id>/``, ``ready`` first."""
    port = urllib.parse.urlsplit(base_url).port
    url = f"ws://127.0.0.1:{port}/ws/chat/{urllib.parse.quote(session_id, safe='')}/"

    async def chat() -> list[dict[str, Any]]:
        async with websockets.connect(
            url, additional_headers={"Cookie": cookie}, origin=base_url
        ) as ws:
            messages = [json.loads(await asyncio.wait_for(ws.recv(), 10))]
            await ws.send(json.dumps({"type": "user_message", "text": text}))
            while messages[-1]["type"] not in ("turn_complete", "error"):
                messages.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
            return messages

    return asyncio.run(chat())
