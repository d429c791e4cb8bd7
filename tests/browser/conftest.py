"""Real browser tests: Debian's Chromium driven by Playwright's sync API.

Playwright's sync API runs an event loop on the main thread for as long as the browser is
open, so every ORM call these tests make from that thread (seeding data, checking rows) looks
to Django like a sync call on an event loop. They are sync by design here, so the browser
tests, and only they, turn Django's async-safety check off. They run last (the root conftest
orders them), and the flag is set from the first browser test on and never cleared: the test
database is torn down after them, still on Playwright's loop.
"""

from __future__ import annotations

import os

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session", autouse=True)
def _sync_orm_beside_playwright():
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    return


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Drive Debian's Chromium (no browser download here)."""
    return {
        **browser_type_launch_args,
        "executable_path": os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"),
        "args": CHROMIUM_ARGS,
    }
