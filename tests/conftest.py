"""Shared fixtures.

Django's async-safety check is on for every test: a sync ORM call made on an event loop
fails with ``SynchronousOnlyOperation``. Only the browser tests (``tests/browser/``, whose
conftest explains why) turn it off, and they run last.
"""

from __future__ import annotations

import pytest


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


def _is_browser_test(item: pytest.Item) -> bool:
    return "tests/browser/" in item.nodeid or bool(
        {"page", "browser"} & set(getattr(item, "fixturenames", ()))
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """Browser tests last: Playwright's event loop (and the async-safety opt-out that comes
    with it, see tests/browser/conftest.py) must not reach the async tests."""
    items.sort(key=_is_browser_test)


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
