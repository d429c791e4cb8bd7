"""Production settings are secure by default (issue 13, item 2).

Each case starts a process of its own with a clean environment (none of the test suite's
opt-outs from ``tests/support/environment.py``), as an operator's server would start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard.settings import NO_SECRET_KEY

REPO = Path(__file__).resolve().parent.parent
STRONG_KEY = "Yq7#pL2@vN9!sK4$wB6%tH1^mD8&fR3*zX5(cJ0)gE7-uA2+oI9"
HOST = "forkview.example.com"


def _run(tmp_path: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "FORKVIEW_", "DATABASE_URL", "REDIS_URL"))
    }
    clean.update(PYTHONPATH=str(REPO), FORKVIEW_DATA_DIR=str(tmp_path / "data"), **env)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


SETUP = (
    "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'dashboard.settings'; django.setup()"
)


def test_production_without_a_key_stops_with_one_line_and_writes_nothing(tmp_path):
    done = _run(tmp_path, SETUP)
    assert done.returncode == 1
    assert done.stderr == NO_SECRET_KEY + "\n"
    assert not list((tmp_path / "data").glob("*secret*"))


def test_an_empty_key_file_is_one_clear_line(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("\n")
    done = _run(tmp_path, SETUP, DJANGO_SECRET_KEY_FILE=str(key_file))
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "is empty" in done.stderr and str(key_file) in done.stderr


def test_a_key_file_is_read(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(STRONG_KEY + "\n")
    code = SETUP + "; from django.conf import settings; print(settings.SECRET_KEY)"
    done = _run(tmp_path, code, DJANGO_SECRET_KEY_FILE=str(key_file))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == STRONG_KEY


def test_local_runs_generate_one_key_even_when_six_processes_start_at_once(tmp_path):
    code = SETUP + "; from django.conf import settings; print(settings.SECRET_KEY)"
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "FORKVIEW_", "DATABASE_URL", "REDIS_URL"))
    }
    clean.update(PYTHONPATH=str(REPO), FORKVIEW_DATA_DIR=str(tmp_path / "data"), DJANGO_DEBUG="1")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=clean,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    keys = {out.strip() for out, _ in results}
    key_file = tmp_path / "data" / ".secret_key"
    assert keys == {key_file.read_text().strip()} and len(keys.pop()) >= 50
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in key_file.parent.iterdir() if "secret" in p.name) == [
        ".secret_key"
    ]


def test_check_deploy_is_clean_with_only_the_key_and_the_hosts(tmp_path):
    code = (
        SETUP + "; from django.core.management import call_command; "
        "call_command('check', deploy=True, fail_level='DEBUG')"
    )
    done = _run(tmp_path, code, DJANGO_SECRET_KEY=STRONG_KEY, DJANGO_ALLOWED_HOSTS=HOST)
    assert done.returncode == 0, done.stderr
    assert "System check identified no issues (0 silenced)." in done.stdout


BEHAVIOUR = """
import json
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
get_user_model().objects.create_user("op", password="pw-op-123456")
from django.test import Client
out = {}
plain = Client(HTTP_HOST=HOST)
r = plain.get("/")
out["plain"] = [r.status_code, r.get("Location")]
out["healthz"] = plain.get("/healthz").status_code
proxied = Client(HTTP_HOST=HOST, HTTP_X_FORWARDED_PROTO="https", enforce_csrf_checks=True)
r = proxied.get("/accounts/login/")
out["login_page"] = [r.status_code, r.get("Strict-Transport-Security"),
                     bool(r.cookies["csrftoken"]["secure"])]
token = r.cookies["csrftoken"].value
r = proxied.post("/accounts/login/", {"username": "op", "password": "pw-op-123456",
                 "csrfmiddlewaretoken": token}, HTTP_ORIGIN="https://" + HOST)
out["login"] = [r.status_code, r.get("Location"), bool(r.cookies["sessionid"]["secure"])]
r = proxied.post("/accounts/login/", {"username": "op", "password": "pw-op-123456",
                 "csrfmiddlewaretoken": token}, HTTP_ORIGIN="https://evil.example.net")
out["foreign_origin"] = r.status_code
print(json.dumps(out))
"""


def _behaviour(tmp_path: Path, **env: str) -> dict:
    code = SETUP + f"\nHOST = {HOST!r}\n" + BEHAVIOUR
    done = _run(tmp_path, code, DJANGO_SECRET_KEY=STRONG_KEY, DJANGO_ALLOWED_HOSTS=HOST, **env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_https_behind_a_tls_proxy_by_default(tmp_path):
    got = _behaviour(tmp_path)
    assert got["plain"] == [301, f"https://{HOST}/"]
    assert got["healthz"] == 200  # probes speak plain HTTP to the instance
    status, hsts, csrf_secure = got["login_page"]
    assert status == 200 and csrf_secure
    assert hsts == "max-age=31536000; includeSubDomains; preload"
    assert got["login"] == [302, "/", True]  # CSRF origin trusted from the allowed hosts
    assert got["foreign_origin"] == 403


def test_each_secure_default_can_be_switched_off(tmp_path):
    got = _behaviour(
        tmp_path,
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_SECURE_HSTS_SECONDS="0",
        DJANGO_SESSION_COOKIE_SECURE="false",
        DJANGO_CSRF_COOKIE_SECURE="false",
    )
    assert got["plain"][0] == 302  # to the login page, over plain HTTP
    assert got["login_page"][1:] == [None, False]
    assert got["login"][2] is False


@pytest.mark.parametrize("header", ["", "HTTP_X_FORWARDED_SSL,on"])
def test_the_proxy_header_is_configurable(tmp_path, header):
    code = SETUP + (
        "; from django.conf import settings"
        "; print(repr(getattr(settings, 'SECURE_PROXY_SSL_HEADER', None)))"
    )
    done = _run(
        tmp_path,
        code,
        DJANGO_SECRET_KEY=STRONG_KEY,
        DJANGO_SECURE_PROXY_SSL_HEADER=header,
    )
    assert done.returncode == 0, done.stderr
    expected = None if not header else ("HTTP_X_FORWARDED_SSL", "on")
    assert done.stdout.strip() == repr(expected)


LOG_LINES = (
    SETUP + "; import logging"
    "; logging.getLogger('django.channels.server').info('HTTP GET / 200')"
    "; logging.getLogger('django.request').error('Internal Server Error: /x')"
    "; logging.getLogger('forkview.test').warning('turn failed')"
)


def test_logs_go_to_stdout_once_each(tmp_path):
    """Under runserver (DEBUG) Django's own console handler and the root's printed every
    request line twice; now one handler, on stdout."""
    done = _run(tmp_path, LOG_LINES, DJANGO_DEBUG="true")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for text in ("HTTP GET / 200", "Internal Server Error: /x", "turn failed"):
        assert sum(text in line for line in lines) == 1, lines
    assert done.stderr == ""


def test_logs_as_json_lines(tmp_path):
    done = _run(tmp_path, LOG_LINES, DJANGO_SECRET_KEY=STRONG_KEY, FORKVIEW_LOG_FORMAT="json")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    # DEBUG off, level WARNING: the request line (INFO) is not logged, the others once each.
    assert [(r["level"], r["logger"], r["message"]) for r in records] == [
        ("ERROR", "django.request", "Internal Server Error: /x"),
        ("WARNING", "forkview.test", "turn failed"),
    ]
    assert all(r["time"] for r in records)
