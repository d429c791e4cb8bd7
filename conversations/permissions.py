"""Who may do what: every permission Forkview checks, and the view decorators that check them.

The codenames live on ``AgentSession.Meta.permissions`` (``continue_conversation``,
``mark_preferred_branch``) or are Django's own model permissions (``view_agentsession``).
Views, websocket consumers, templates and tests name a permission only through this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from django.contrib.auth.decorators import login_required, permission_required

if TYPE_CHECKING:
    from django.utils.functional import _StrPromise

__all__ = [
    "CHAT",
    "CHAT_CODENAME",
    "CUSTOM_PERMISSIONS",
    "PREFER",
    "PREFER_CODENAME",
    "VIEW",
    "VIEW_CODENAME",
    "chatter_required",
    "preferrer_required",
    "reviewer_required",
]

APP_LABEL = "conversations"

#: Browse sessions, branches, usage and exports (Django's view permission on sessions).
VIEW_CODENAME = "view_agentsession"
#: Continue and fork conversations in the live chat.
CHAT_CODENAME = "continue_conversation"
#: Mark the branch a session opens on in the review pages.
PREFER_CODENAME = "mark_preferred_branch"

VIEW = f"{APP_LABEL}.{VIEW_CODENAME}"
CHAT = f"{APP_LABEL}.{CHAT_CODENAME}"
PREFER = f"{APP_LABEL}.{PREFER_CODENAME}"

#: ``AgentSession.Meta.permissions``: the codenames Forkview adds to Django's own.
CUSTOM_PERMISSIONS: list[tuple[str, str | _StrPromise]] = [
    (CHAT_CODENAME, "Can continue and fork conversations in the live chat"),
    (PREFER_CODENAME, "Can mark the branch reviewers see first"),
]

_View = TypeVar("_View", bound=Callable[..., Any])


def _requiring(permission: str) -> Callable[[_View], _View]:
    """Anonymous -> the login page; logged in without ``permission`` -> 403."""

    def decorate(view: _View) -> _View:
        checked = permission_required(permission, raise_exception=True)(view)
        return login_required(checked)

    return decorate


reviewer_required = _requiring(VIEW)
chatter_required = _requiring(CHAT)
preferrer_required = _requiring(PREFER)
