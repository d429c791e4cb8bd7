"""Shared fixtures. Browser tests (Playwright's sync API) are ordered last: its event loop
would break the async tests that follow it in the same process."""

from __future__ import annotations

import os

# Playwright's sync API keeps an event loop running on the main thread; the ORM calls the
# browser tests make from that thread are sync by design.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

import pytest  # noqa: E402

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


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Drive Debian's Chromium (no browser download here)."""
    return {
        **browser_type_launch_args,
        "executable_path": os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"),
        "args": CHROMIUM_ARGS,
    }


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: bool({"page", "browser"} & set(getattr(item, "fixturenames", ()))))
