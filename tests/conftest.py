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


@pytest.fixture(scope="session", autouse=True)
def _close_worker_thread_connections(django_db_setup):
    """Close the database connection of asgiref's worker thread before the test database goes.

    ``DjangoSession`` runs its ORM work through ``sync_to_async``; outside ``async_to_sync`` that
    is asgiref's single worker thread, whose (persistent) connection would otherwise keep
    PostgreSQL from dropping the test database at the end of the run.
    """
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    executor = SyncToAsync.single_thread_executor
    if not getattr(executor, "_shutdown", False):
        executor.submit(connections.close_all).result(timeout=30)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: bool({"page", "browser"} & set(getattr(item, "fixturenames", ()))))


# ---- Review UI fixtures (dashboard) -----------------------------------------------------------


def grant(user, *codenames: str):
    """Give ``user`` the ``conversations`` permissions ``codenames``; return the user."""
    from django.contrib.auth.models import Permission

    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="conversations", codename__in=codenames)
    )
    return user


@pytest.fixture
def reviewer(db, django_user_model):
    """A user who may browse conversations (``conversations.view_agentsession``)."""
    user = django_user_model.objects.create_user(username="reviewer", password="review-pass-1")
    return grant(user, "view_agentsession")


@pytest.fixture
def reviewer_client(client, reviewer):
    """A test client logged in as :func:`reviewer`."""
    client.force_login(reviewer)
    return client
