"""Who may do what: every permission Forkview checks, and the view decorators that check them.

The codenames live on ``AgentSession.Meta.permissions`` (``continue_conversation``,
``mark_preferred_branch``) or are Django's own model permissions (``view_agentsession``).
Views, websocket consumers, agent tools, templates and tests name a permission only through
this module.

The model (one rule per capability, all checked here):

- **view** (``view_agentsession``): read every session: the list, search, detail, compare,
  usage, exports, the viewers' live socket, and what agent tools read for the user.
- **chat** = view + ``continue_conversation``: the chat pages and the chat socket. Continuing
  a conversation shows its history, so it needs the right to read it; ``continue_conversation``
  alone grants nothing.
- **prefer** = ``mark_preferred_branch``: mark the branch a session opens on.
- **annotate** = view + ``annotate``: score, comment and tag turns, branches and sessions, and
  set a session's review status. Everyone who may view sees annotations.
- **moderate** = view + ``delete_annotation`` (Django's own model permission on
  ``Annotation``, so it needs no migration): delete someone else's annotation (never change
  it), on the session page, through the API and in the admin; each such delete is audited
  with the moderator as actor. Authors keep their rights over their own annotations.
- staff: the admin site (Django's own ``is_staff`` and model permissions).

Permissions are per user (no per-session ownership): whoever may view may view every session.
An inactive user may do nothing (Django's backends give inactive users no permissions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from django.contrib.auth.decorators import login_required, permission_required

if TYPE_CHECKING:
    from django.utils.functional import _StrPromise

__all__ = [
    "CHAT",
    "ANNOTATE",
    "ANNOTATE_CODENAME",
    "ANNOTATE_PERMISSIONS",
    "MODERATE",
    "MODERATE_CODENAME",
    "MODERATE_PERMISSIONS",
    "CHAT_CODENAME",
    "CUSTOM_PERMISSIONS",
    "PREFER",
    "PREFER_CODENAME",
    "VIEW",
    "CHAT_PERMISSIONS",
    "VIEW_CODENAME",
    "VIEW_PERMISSIONS",
    "annotator_required",
    "can_annotate",
    "can_chat",
    "can_moderate",
    "can_view",
    "chatter_required",
    "holds_all",
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
#: Score, comment, tag and set review statuses.
ANNOTATE_CODENAME = "annotate"
#: Delete other people's annotations (moderation). Django's own delete permission on the
#: ``Annotation`` model: it exists already (no migration), and staff holding it may also delete
#: annotations in the admin.
MODERATE_CODENAME = "delete_annotation"

VIEW = f"{APP_LABEL}.{VIEW_CODENAME}"
CHAT = f"{APP_LABEL}.{CHAT_CODENAME}"
PREFER = f"{APP_LABEL}.{PREFER_CODENAME}"
ANNOTATE = f"{APP_LABEL}.{ANNOTATE_CODENAME}"
MODERATE = f"{APP_LABEL}.{MODERATE_CODENAME}"

#: ``AgentSession.Meta.permissions``: the codenames Forkview adds to Django's own.
CUSTOM_PERMISSIONS: list[tuple[str, str | _StrPromise]] = [
    (CHAT_CODENAME, "Can continue and fork conversations in the live chat"),
    (PREFER_CODENAME, "Can mark the branch reviewers see first"),
    (ANNOTATE_CODENAME, "Can score, comment on, tag and set the review status of sessions"),
]

#: What reading sessions takes.
VIEW_PERMISSIONS: tuple[str, ...] = (VIEW,)
#: What the live chat takes: continuing a conversation requires being allowed to read it.
CHAT_PERMISSIONS: tuple[str, ...] = (VIEW, CHAT)
#: What writing annotations takes: annotating a conversation requires being allowed to read it.
ANNOTATE_PERMISSIONS: tuple[str, ...] = (VIEW, ANNOTATE)
#: What deleting someone else's annotation takes: moderating a conversation requires reading it.
MODERATE_PERMISSIONS: tuple[str, ...] = (VIEW, MODERATE)

_View = TypeVar("_View", bound=Callable[..., Any])


def holds_all(user: object, permissions: tuple[str, ...]) -> bool:
    """Whether ``user`` (any object, ``None`` included) is an active user holding them all.

    Runs queries (the user's permission cache): from async code, call it in a worker thread.
    A user model without Django's ``PermissionsMixin`` has no permissions to check.
    """
    from django.contrib.auth.models import PermissionsMixin

    return (
        isinstance(user, PermissionsMixin)
        and bool(getattr(user, "is_authenticated", False))
        and bool(getattr(user, "is_active", False))
        and user.has_perms(permissions)
    )


def can_view(user: object) -> bool:
    """Whether ``user`` may read sessions (pages, exports, agent tools' reads)."""
    return holds_all(user, VIEW_PERMISSIONS)


def can_chat(user: object) -> bool:
    """Whether ``user`` may continue conversations (the chat pages and socket)."""
    return holds_all(user, CHAT_PERMISSIONS)


def can_annotate(user: object) -> bool:
    """Whether ``user`` may score, comment, tag and set review statuses."""
    return holds_all(user, ANNOTATE_PERMISSIONS)


def can_moderate(user: object) -> bool:
    """Whether ``user`` may delete other people's annotations (superusers may)."""
    return holds_all(user, MODERATE_PERMISSIONS)


def _requiring(*permissions: str) -> Callable[[_View], _View]:
    """Anonymous -> the login page; logged in without all ``permissions`` -> 403."""

    def decorate(view: _View) -> _View:
        checked = permission_required(permissions, raise_exception=True)(view)
        return login_required(checked)

    return decorate


reviewer_required = _requiring(*VIEW_PERMISSIONS)
chatter_required = _requiring(*CHAT_PERMISSIONS)
preferrer_required = _requiring(PREFER)
annotator_required = _requiring(*ANNOTATE_PERMISSIONS)
