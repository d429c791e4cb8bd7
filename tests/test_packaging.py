"""Forkview as an installed package (issue 13, item 1): the wheel holds everything the app needs.

The wheel is built from this checkout, installed outside it (``pip install --target``), and
run from another folder through the ``forkview`` console script, as an operator would:
``forkview migrate``, ``seed_demo``, ``createsuperuser``, then ``forkview serve`` (uvicorn), and
every page is fetched over real HTTP with DEBUG off, a chat turn runs over the real websocket,
and the state lands in ``FORKVIEW_DATA_DIR``, never in the installed package's folder.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import os
import re
import socket
import subprocess
import sys
import time
import tomllib
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "pw-operator-123"
SECRET = "packaging-test-secret-key-" + "x" * 40


def _listed_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(config["tool"]["setuptools"]["packages"])


def test_every_package_of_the_tree_is_listed():
    on_disk = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for top in ("conversations", "dashboard")
        for path in (ROOT / top).rglob("__init__.py")
    }
    bundled = {"dashboard.bundled.static", "dashboard.bundled.templates"}
    assert _listed_packages() == on_disk | bundled


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("forkview-*.whl")
    return built


def test_the_wheel_holds_every_file_the_app_needs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for top in ("conversations", "dashboard"):
        for path in (ROOT / top).rglob("*.py"):
            expected.add(path.relative_to(ROOT).as_posix())
    for folder, target in (
        ("templates", "dashboard/bundled/templates"),
        ("static", "dashboard/bundled/static"),
    ):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file():
                expected.add(f"{target}/{path.relative_to(ROOT / folder).as_posix()}")
    assert expected - names == set()
    assert any(n.startswith("conversations/migrations/0001") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "forkview = dashboard.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """The wheel installed in a folder of its own, set up, and served by ``forkview serve``."""
    base = tmp_path_factory.mktemp("installed")
    site, data, work = base / "site", base / "data", base / "elsewhere"
    work.mkdir()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "FORKVIEW_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(
        PYTHONPATH=str(site),
        FORKVIEW_DATA_DIR=str(data),
        DJANGO_SECRET_KEY=SECRET,
        DJANGO_DEBUG="false",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
        FORKVIEW_OFFLINE_TOKEN_DELAY_MS="0",
        # plain HTTP on a private network: the documented opt-outs of the HTTPS defaults
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_SESSION_COOKIE_SECURE="false",
        DJANGO_CSRF_COOKIE_SECURE="false",
        DJANGO_SECURE_HSTS_SECONDS="0",
    )
    forkview = [sys.executable, str(site / "bin" / "forkview")]

    def run(*args: str) -> str:
        done = subprocess.run(
            [*forkview, *args], cwd=work, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    run("migrate", "--noinput")
    run("seed_demo")
    run("createsuperuser", "--noinput", "--username", "operator", "--email", "op@example.com")
    port = _free_port()
    server = subprocess.Popen(
        [*forkview, "serve", "--port", str(port), "--workers", "1"],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"forkview serve did not start:\n{server.stdout.read()[-3000:]}")
        time.sleep(0.2)
    try:
        yield {"url": base_url, "site": site, "data": data, "work": work, "run": run}
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
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


@pytest.fixture(scope="module")
def visitor(installed) -> Visitor:
    client = Visitor(installed["url"])
    client.login("operator", PASSWORD)
    return client


def test_state_goes_to_the_data_dir_not_the_package(installed):
    data, site = installed["data"], installed["site"]
    assert (data / "forkview.sqlite3").is_file()
    assert (data / "staticfiles" / "staticfiles.json").is_file()  # collected by serve
    for name in ("forkview.sqlite3", ".secret_key", "staticfiles"):
        assert not list(site.rglob(name)), name
    assert not list(installed["work"].iterdir())  # nothing written where it was run from


def test_every_page_renders_from_the_installed_package(installed, visitor):
    status, _, listing = visitor.get("/")
    assert status == 200 and "demo/trip-planning" in listing
    session = "/sessions/" + urllib.parse.quote("demo/trip-planning", safe="") + "/"
    status, _, detail = visitor.get(session)
    assert status == 200 and "turn-1" in detail
    compare = re.search(r'href="([^"]*/compare/\?[^"]+)"', detail)
    assert compare, "no compare link on the session page"
    pages = [
        session + "chat/",
        session + "usage.json",
        session + "export/json/",
        session + "export/markdown/",
        compare.group(1).replace("&amp;", "&"),
        "/?q=weather",
        "/chat/new/",
        "/admin/",
        "/admin/conversations/agentsession/",
    ]
    for path in pages:
        status, content_type, body = visitor.get(path)
        assert status == 200, (path, body[:300])
        assert "Traceback" not in body
    status, _, missing = visitor.get("/sessions/no-such-session/")
    assert status == 404 and "Traceback" not in missing


def test_static_files_are_hashed_and_compressed(installed, visitor):
    _, _, page = visitor.get("/")
    css = re.search(r'href="(/static/dashboard/css/forkview\.[0-9a-f]{12}\.css)"', page)
    assert css, "the page links no hashed stylesheet"
    request = urllib.request.Request(
        installed["url"] + css.group(1), headers={"Accept-Encoding": "gzip"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert response.headers.get("Content-Encoding") == "gzip"
        assert "immutable" in response.headers.get("Cache-Control", "")


def test_a_chat_turn_runs_over_the_served_websocket(installed, visitor):
    port = urllib.parse.urlsplit(installed["url"]).port
    url = f"ws://127.0.0.1:{port}/ws/chat/{urllib.parse.quote('pkg/chat', safe='')}/"

    async def chat() -> list[dict[str, Any]]:
        headers = {"Cookie": visitor.cookie_header()}
        async with websockets.connect(
            url, additional_headers=headers, origin=installed["url"]
        ) as ws:
            messages = [json.loads(await asyncio.wait_for(ws.recv(), 10))]
            await ws.send(json.dumps({"type": "user_message", "text": "calculate 2+2*3"}))
            while messages[-1]["type"] not in ("turn_complete", "error"):
                messages.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
            return messages

    messages = asyncio.run(chat())
    assert messages[0]["type"] == "ready"
    assert messages[-1]["type"] == "turn_complete", messages[-3:]
    assert any(m["type"] == "tool_call" for m in messages)
    status, _, page = visitor.get("/sessions/" + urllib.parse.quote("pkg/chat", safe="") + "/")
    assert status == 200 and "calculate 2+2*3" in page
