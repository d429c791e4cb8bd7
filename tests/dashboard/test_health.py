"""``/healthz``: 200 without login when the database and the channel layer answer, else 503.

The failure cases run in a child process whose settings point at a port nothing listens on
(a real refused connection to PostgreSQL or Redis, no mocks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


def test_healthz_answers_ok_without_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_healthz_only_reads(client):
    assert client.post("/healthz").status_code == 405
    assert client.head("/healthz").status_code == 200


_CHILD = """
import django, json, os
os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
django.setup()
from django.test import Client
response = Client(HTTP_HOST="localhost").get("/healthz")
print(json.dumps([response.status_code, response.json()]))
"""


def _child(**env: str) -> tuple[int, dict[str, str]]:
    environ = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    environ.update(env)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    status, body = json.loads(done.stdout.strip().splitlines()[-1])
    return status, body


def test_healthz_is_503_when_the_database_is_unreachable():
    status, body = _child(DATABASE_URL="postgres://nobody:x@127.0.0.1:1/none")
    assert (status, body) == (503, {"status": "unavailable"})  # says nothing more


def test_healthz_is_503_when_redis_is_unreachable(tmp_path):
    status, body = _child(
        DATABASE_URL=f"sqlite:///{tmp_path}/h.sqlite3", REDIS_URL="redis://127.0.0.1:1/0"
    )
    assert (status, body) == (503, {"status": "unavailable"})


def test_healthz_is_200_in_a_fresh_process(tmp_path):
    status, body = _child(DATABASE_URL=f"sqlite:///{tmp_path}/h.sqlite3")
    assert (status, body) == (200, {"status": "ok"})
