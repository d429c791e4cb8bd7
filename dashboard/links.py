"""The URLs of Forkview's pages for one session, branch or turn: built in one place.

Session and branch ids may hold spaces, slashes, quotes, newlines, control characters and
non-ASCII text, so every link is ``reverse()`` plus ``urlencode``, never string formatting.
Review pages, the chat, the admin, the agent tools and the benches all link through these
functions.

A session id sits in the URL path through :class:`SessionIdConverter` (``<sid:session_id>``):
an ordinary id (``demo/trip café`` too) is its own path, as ``<path:...>`` writes it; an id a
path cannot carry unambiguously (ending in a route's suffix, so ``x/chat`` would open the chat
of ``x``; holding an empty, ``.`` or ``..`` segment; a control character; a leading ``~``) is
written as ``~`` + its base64url text. Branch ids
travel in the query string (``urlencode``), which carries anything.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import urlencode

from django.urls import reverse

from conversations.models import MAIN_BRANCH

__all__ = [
    "SessionIdConverter",
    "chat_url",
    "compare_url",
    "export_url",
    "session_url",
    "turns_url",
    "usage_url",
]


# ---- The session id in a path -----------------------------------------------------------------

#: Ids written as ``~`` + base64url: a control character (browsers drop tabs and newlines
#: from URLs; ``<path:>`` cannot match a newline), a lone surrogate, or a leading ``~`` (so the
#: encoded form is never ambiguous).
_ENCODE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]|^~")
#: ...and ids with a slash that a path cannot carry as is: one ending in a route's suffix
#: (``x/chat`` would open the chat of ``x``) or an empty, ``.`` or ``..`` segment (browsers
#: and proxies fold those).
_ROUTE_TAIL = re.compile(
    r"/(?:chat|compare|turns|prefer|usage\.json|export(?:/[^/]*)?|annotations(?:/[^/]*){0,2})/?$"
    r"|(?:^|/)\.{0,2}(?:/|$)"
)
_MARK = "~"


class SessionIdConverter:
    """``<sid:session_id>``: a session id in a URL path, for every id (see the module text).

    Paths of ordinary ids are what ``<path:session_id>`` made; a path that is not the
    encoded form is taken as is, so links from before (``/sessions/a/b/``) still resolve.
    """

    # Anything up to the route's own suffix; (?s) so a decoded %0A still matches.
    regex = r"(?s:.+)"

    def to_python(self, value: str) -> str:
        if value.startswith(_MARK) and "/" not in value:
            text = value[len(_MARK) :]
            try:
                raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
                return raw.decode("utf-8", "surrogatepass")
            except (binascii.Error, ValueError):
                pass
        return value

    def to_url(self, value: str) -> str:
        if _ENCODE.search(value) is None and ("/" not in value or not _ROUTE_TAIL.search(value)):
            return value
        raw = value.encode("utf-8", "surrogatepass")
        return _MARK + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


# ---- Links ------------------------------------------------------------------------------------


def session_url(
    session_id: str,
    branch_id: str | None = None,
    turn: int | None = None,
    *,
    start: int | None = None,
) -> str:
    """The review page of a session; ``branch_id=None`` opens its preferred branch.

    ``turn`` opens the window around that turn (and anchors it); ``start`` opens the page of
    turns from ``start`` on (the "load earlier" and "later turns" links).
    """
    url = reverse("session_detail", kwargs={"session_id": session_id})
    params: dict[str, str | int] = {}
    if branch_id is not None:  # explicit, even for main: without it the preferred branch opens
        params["branch"] = branch_id
    if turn is not None:
        params["turn"] = turn
    if start is not None:
        params["start"] = start
    query = f"?{urlencode(params)}" if params else ""
    anchor = f"#turn-{turn}" if turn is not None else ""
    return f"{url}{query}{anchor}"


def turns_url(session_id: str, branch_id: str, *, start: int, end: int) -> str:
    """Turns ``start..end`` of a branch as an HTML fragment ("load earlier" without a reload)."""
    url = reverse("session_turns", kwargs={"session_id": session_id})
    return f"{url}?{urlencode({'branch': branch_id, 'start': start, 'end': end})}"


def usage_url(session_id: str, branch_id: str) -> str:
    """The charts' JSON twin of a branch."""
    url = reverse("session_usage", kwargs={"session_id": session_id})
    return f"{url}?{urlencode({'branch': branch_id})}"


def compare_url(session_id: str, a: str, b: str) -> str:
    """Branches ``a`` and ``b`` side by side."""
    url = reverse("session_compare", kwargs={"session_id": session_id})
    return f"{url}?{urlencode({'a': a, 'b': b})}"


def export_url(session_id: str, fmt: str) -> str:
    """A download of the session (``json``, ``jsonl``, ``md``)."""
    return reverse("session_export", kwargs={"session_id": session_id, "fmt": fmt})


def chat_url(session_id: str, branch_id: str = MAIN_BRANCH) -> str:
    """The live chat on a branch."""
    url = reverse("session_chat", kwargs={"session_id": session_id})
    return f"{url}?{urlencode({'branch': branch_id})}"
