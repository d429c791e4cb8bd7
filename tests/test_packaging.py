"""Forkview as an installed package (issue 13, item 1): the wheel holds everything the app needs.

The wheel is built from this checkout, installed outside it (``pip install --target``), and
run from another folder through the ``forkview`` console script, as an operator would:
``forkview migrate``, ``seed_demo``, ``createsuperuser``, then ``forkview serve`` (uvicorn), and
every page is fetched over real HTTP with DEBUG off, a chat turn runs over the real websocket,
and the state lands in ``FORKVIEW_DATA_DIR``, never in the installed package's folder.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.served import Visitor, chat_turn, free_port, serving

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "pw-operator-123"
SECRET = "packaging-test-secret-key-" + "x" * 40


def _listed_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(config["tool"]["setuptools"]["packages"])


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_lock_pins_every_dependency_and_the_suite_runs_on_it():
    """requirements.lock pins each declared requirement (and what they pull in), and this
    environment holds exactly those versions: ``make`` installs with ``-c requirements.lock``,
    so CI tests what the lock says, and an install that drifted from it fails here."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"].values()]
    names = {
        _normalized(re.match(r"[A-Za-z0-9._-]+", requirement).group())  # type: ignore[union-attr]
        for group in declared
        for requirement in ([group] if isinstance(group, str) else group)
    }
    locked = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith(("#", " ")):
            name, version = line.split(";")[0].strip().split("==")
            locked[_normalized(name.split("[")[0])] = version
    assert names <= set(locked), names - set(locked)
    assert len(locked) > len(names)  # their own dependencies are pinned too
    drifted = {}
    for name, version in locked.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # for another Python (a marker), e.g. async-timeout before 3.11.3
        if installed != version:
            drifted[name] = (installed, version)
    assert not drifted, f"installed vs locked: {drifted}"


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
    port = free_port()
    serve = [*forkview, "serve", "--port", str(port), "--workers", "1"]
    with serving(serve, port=port, cwd=work, env=env):
        base_url = f"http://127.0.0.1:{port}"
        yield {"url": base_url, "site": site, "data": data, "work": work, "run": run}


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
    messages = chat_turn(installed["url"], visitor.cookie_header(), "pkg/chat", "calculate 2+2*3")
    assert messages[0]["type"] == "ready"
    assert messages[-1]["type"] == "turn_complete", messages[-3:]
    assert any(m["type"] == "tool_call" for m in messages)
    status, _, page = visitor.get("/sessions/" + urllib.parse.quote("pkg/chat", safe="") + "/")
    assert status == 200 and "calculate 2+2*3" in page
