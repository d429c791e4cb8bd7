"""Logging a user in outside the Django test client: the one helper for session cookies.

Browser tests (Playwright), websocket tests and the cross-process drivers need the cookie a
browser would send after signing in. ``force_login`` on a throwaway test client creates a real
Django session in the database; these helpers hand out its cookie in the shapes callers need.
"""

from __future__ import annotations

from typing import Any

__all__ = ["browser_login", "cookie_header", "session_cookie_value"]


def session_cookie_value(user: Any) -> str:
    """The value of a new session cookie of ``user`` (a user object or a username)."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    if isinstance(user, str):
        user = get_user_model().objects.get(username=user)
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def cookie_header(user: Any) -> str:
    """A ``Cookie`` header value logging ``user`` in (websockets, raw HTTP)."""
    from django.conf import settings

    return f"{settings.SESSION_COOKIE_NAME}={session_cookie_value(user)}"


def browser_login(context: Any, base_url: str, user: Any) -> None:
    """Log ``user`` in for a Playwright browser context (or page) on ``base_url``."""
    from django.conf import settings

    context = getattr(context, "context", context)  # a page: its context
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": session_cookie_value(user),
                "url": base_url,
            }
        ]
    )
