# Forkview: set up, run and test.
#
#   make run             create .venv if needed, install, migrate, seed the demo data (when the
#                        seed_demo command exists), serve over ASGI on http://127.0.0.1:8000/
#   make test            install the test extras (+ Debian's chromium if missing), run the whole
#                        suite on SQLite + the in-memory channel layer
#   make test-postgres   the whole suite against DATABASE_URL (PostgreSQL) + REDIS_URL from the env
#   make lint            ruff check, ruff format --check, mypy (strict, django-stubs), deptry
#   make lock            re-resolve requirements.lock (the pinned versions every install uses)
#
# Works on a fresh Debian 12 machine with Python 3.11 as root; `.ci/run` is what CI runs.
# Knobs (make VAR=value ...): PYTHON, VENV, HOST, PORT, TEST_TIMEOUT (seconds per pytest run),
# PYTEST_ARGS, SQLITE_URL (make test only: keep the SQLite files elsewhere), JUNIT_XML,
# RESULTS_FILE (one tab-separated result line per pytest run is appended; used by .ci/run).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help

PYTHON       ?= python3
VENV         ?= .venv
HOST         ?= 127.0.0.1
PORT         ?= 8000
TEST_TIMEOUT ?= 1800
PYTEST_ARGS  ?=
SQLITE_URL   ?=
JUNIT_XML    ?=
RESULTS_FILE ?=
CHROMIUM     ?= $(or $(CHROMIUM_PATH),/usr/bin/chromium)

LOCK       = requirements.lock
UV_VERSION = 0.13.8

PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.forkview-installed
RUN_STAMP := $(VENV)/.forkview-run-installed

.PHONY: help install lock run test test-postgres lint chromium

help:
	@sed -n '3,9s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

# --- environment -----------------------------------------------------------------------------

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
	  echo "Forkview needs Python 3.11+; '$(PYTHON)' is $$($(PYTHON) -V 2>&1)." >&2; exit 1; }
	echo "==> creating $(VENV) with $$($(PYTHON) -V)"
	if ! $(PYTHON) -m venv $(VENV); then
	  rm -rf $(VENV)
	  # Debian's own python3 ships venv/ensurepip in a separate package.
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	    echo "==> installing python3-venv"
	    export DEBIAN_FRONTEND=noninteractive
	    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
	    $(PYTHON) -m venv $(VENV)
	  else
	    echo "Could not create $(VENV): install python3-venv (apt-get install python3-venv)." >&2; exit 1
	  fi
	fi

# Every install takes the versions of requirements.lock (the tested ones; `make lock` renews it).
$(STAMP): pyproject.toml $(LOCK) | $(PY)
	@echo "==> installing forkview and its test and lint extras into $(VENV) (pip install -c $(LOCK) -e '.[test,lint]')"
	$(PY) -m pip install -q -c $(LOCK) -e '.[test,lint]'
	touch $@

# What running needs, and nothing else (no test or lint tools, no Playwright).
$(RUN_STAMP): pyproject.toml $(LOCK) | $(PY)
	@echo "==> installing forkview into $(VENV) (pip install -c $(LOCK) -e .)"
	$(PY) -m pip install -q -c $(LOCK) -e .
	touch $@

install: $(STAMP)

# Re-resolve requirements.lock from pyproject.toml (newest versions the ranges allow) for
# CI's platform: Python 3.11 on x86_64 Debian 12. Then `make test` installs and tests them.
lock: | $(PY)
	@$(PY) -m pip install -q "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip compile pyproject.toml --extra test --extra lint --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_36 --custom-compile-command "make lock" -o $(LOCK) -q

# Debian's Chromium drives the browser tests (Playwright's own browser download is not used).
chromium:
	@if [ -x "$(CHROMIUM)" ]; then exit 0; fi
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	  echo "==> installing Debian's chromium (apt-get install --no-install-recommends chromium)"
	  export DEBIAN_FRONTEND=noninteractive
	  apt-get update -qq >/dev/null
	  apt-get install -y -qq --no-install-recommends chromium >/dev/null
	else
	  echo "$(CHROMIUM) is missing: run 'apt-get install chromium' as root, or set CHROMIUM_PATH." >&2
	  exit 1
	fi

# --- run ---------------------------------------------------------------------------------------

# `manage.py runserver` is daphne's ASGI runserver here ("daphne" is first in INSTALLED_APPS):
# http + websockets through dashboard.asgi.application, plus static files while DEBUG is on, and
# autoreload. Production runs `forkview serve` (uvicorn workers; README "Running in production").
run: $(RUN_STAMP)
	@export DJANGO_DEBUG="$${DJANGO_DEBUG:-true}"
	echo "==> migrate"
	$(PY) manage.py migrate --no-input
	commands="$$($(PY) manage.py help --commands)"
	if grep -qx seed_demo <<<"$$commands"; then
	  echo "==> seed_demo"
	  $(PY) manage.py seed_demo
	else
	  echo "==> (no seed_demo command yet: skipping the demo data)"
	fi
	echo "==> Forkview: http://$(HOST):$(PORT)/   (daphne, ASGI; Ctrl-C to stop)"
	exec $(PY) manage.py runserver "$(HOST):$(PORT)"

# --- lint ------------------------------------------------------------------------------------

# Every finding fails: ruff's rules and format (pyproject.toml), mypy strict on the apps.
lint: $(STAMP)
	@echo "==> ruff check"
	$(VENV)/bin/ruff check .
	echo "==> ruff format --check"
	$(VENV)/bin/ruff format --check .
	echo "==> mypy (strict, django-stubs)"
	# The django-stubs plugin imports the settings, which need a key with DEBUG off.
	DJANGO_SECRET_KEY="$${DJANGO_SECRET_KEY:-forkview-lint-only-key}" $(VENV)/bin/mypy
	echo "==> deptry (every import declared in pyproject.toml)"
	$(VENV)/bin/deptry .

# --- test --------------------------------------------------------------------------------------

# Reads a pytest --junitxml report; prints "<label>: N passed, N failed, N errors, N skipped" and
# fails when pytest failed, timed out, or ran no test at all.
define JUNIT_SUMMARY
import os, sys, xml.etree.ElementTree as ET
path, label, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
except (OSError, ET.ParseError):
    n = dict(tests=0, failures=0, errors=0, skipped=0)
passed = max(n["tests"] - n["failures"] - n["errors"] - n["skipped"], 0)
why = {124: "timed out", 137: "killed after timing out", 5: "no tests collected"}.get(rc)
ok = rc == 0 and n["tests"] > 0 and passed > 0
if rc == 0 and not ok:
    why = "no test ran"
line = (f'{label}: {passed} passed, {n["failures"]} failed, {n["errors"]} errors, '
        f'{n["skipped"]} skipped (pytest exit {rc}{", " + why if why else ""})')
if os.environ.get("RESULTS_FILE"):
    with open(os.environ["RESULTS_FILE"], "a") as out:
        print(label, passed, n["failures"], n["errors"], n["skipped"], rc, int(ok), sep="\t", file=out)
print(("" if ok else "FAILED ") + line)
sys.exit(0 if ok else 1)
endef
export JUNIT_SUMMARY
export RESULTS_FILE

# $(call pytest_run,label): the whole suite under `timeout`, then the summary check above.
define pytest_run
	junit="$(or $(JUNIT_XML),$$(mktemp -t forkview-junit.XXXXXX.xml))"
	rm -f "$$junit"
	rc=0
	timeout -k 30 $(TEST_TIMEOUT) $(PY) -m pytest --junitxml="$$junit" $(PYTEST_ARGS) || rc=$$?
	$(PY) -c "$$JUNIT_SUMMARY" "$$junit" "$(1)" "$$rc"
endef

test: $(STAMP) chromium
	@if [ -n "$(SQLITE_URL)" ]; then
	  case "$(SQLITE_URL)" in sqlite:*) ;; *) echo "SQLITE_URL must be a sqlite:// URL" >&2; exit 2;; esac
	  export DATABASE_URL="$(SQLITE_URL)"
	else
	  unset DATABASE_URL
	fi
	unset REDIS_URL
	echo "==> pytest: whole suite on SQLite + the in-memory channel layer (timeout $(TEST_TIMEOUT) s)"
	$(call pytest_run,sqlite+in-memory)

test-postgres: $(STAMP) chromium
	@case "$${DATABASE_URL:-}" in postgres://*|postgresql://*|pgsql://*) ;;
	  *) echo "make test-postgres needs DATABASE_URL=postgres://user:pass@host:port/db" >&2; exit 2;; esac
	case "$${REDIS_URL:-}" in redis://*|rediss://*|unix://*) ;;
	  *) echo "make test-postgres needs REDIS_URL=redis://host:port/0" >&2; exit 2;; esac
	echo "==> pytest: whole suite on PostgreSQL + Redis (timeout $(TEST_TIMEOUT) s)"
	$(call pytest_run,postgres+redis)
