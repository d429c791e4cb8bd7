"""Who is calling: a bearer token or the session cookie, and what they may do.

``Authorization: Bearer <token>`` is checked first (``conversations.reviews.token_authenticate``:
tokens are stored hashed, revocable, and die with an inactive user); otherwise the session
cookie of a signed-in user, and then CSRF is enforced for unsafe methods, as on the pages.
Nobody -> 401. Signed in without the view permission -> 403; writing annotations or review
statuses also takes the annotate permission (:func:`require_annotator`), as on the pages.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.errors import AuthorizationError, HttpError
from ninja.security import APIKeyCookie, HttpBearer

from conversations.permissions import can_annotate, can_view
from conversations.reviews import token_authenticate

__all__ = [
    "CANNOT_ANNOTATE",
    "CANNOT_VIEW",
    "CSRF_FAILED",
    "NO_CREDENTIALS",
    "BearerToken",
    "SessionCookie",
    "require_annotator",
]

NO_CREDENTIALS = (
    "Authentication required: send 'Authorization: Bearer <token>' (a token from "
    "/account/tokens/), or sign in."
)
CANNOT_VIEW = "You do not have permission to view sessions."
CANNOT_ANNOTATE = "You do not have permission to annotate sessions."
CSRF_FAILED = (
    "CSRF check failed: with the session cookie, unsafe methods need the X-CSRFToken header "
    "(or use a bearer token)."
)


def _viewer(user: Any) -> Any:
    """``user`` if they may view sessions; a signed-in user who may not: 403."""
    if not can_view(user):
        raise AuthorizationError(403, CANNOT_VIEW)
    return user


class BearerToken(HttpBearer):
    """``Authorization: Bearer fv_...``: a personal API token."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = token_authenticate(raw=token.strip())
        return None if user is None else _viewer(user)


class SessionCookie(APIKeyCookie):
    """The signed-in user of the session cookie (what the pages and the docs page use)."""

    def __init__(self) -> None:
        from django.conf import settings

        self.param_name = settings.SESSION_COOKIE_NAME
        super().__init__(csrf=True)

    def _get_key(self, request: HttpRequest) -> str | None:
        # Only a signed-in user's request is checked for CSRF: anonymous is a 401, not a 403.
        if not request.user.is_authenticated:
            return None
        try:
            return super()._get_key(request)
        except HttpError as exc:
            raise HttpError(403, CSRF_FAILED) from exc

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        return _viewer(request.user) if request.user.is_authenticated else None


def require_annotator(request: HttpRequest) -> Any:
    """The calling user if they may annotate (scores, comments, tags, review statuses); else 403."""
    user = getattr(request, "auth", None)
    if not can_annotate(user):
        raise AuthorizationError(403, CANNOT_ANNOTATE)
    return user
