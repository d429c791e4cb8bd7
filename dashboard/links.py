"""The URLs of Forkview's pages for one session, branch or turn: built in one place.

Session and branch ids may hold spaces, slashes, quotes and non-ASCII text, so every link is
``reverse()`` plus ``urlencode``, never string formatting. Review pages, the chat, the admin,
the agent tools and the benches all link through these functions.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.urls import reverse

from conversations.models import MAIN_BRANCH

__all__ = ["chat_url", "compare_url", "session_url", "turns_url", "usage_url"]


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


def chat_url(session_id: str, branch_id: str = MAIN_BRANCH) -> str:
    """The live chat on a branch."""
    url = reverse("session_chat", kwargs={"session_id": session_id})
    return f"{url}?{urlencode({'branch': branch_id})}"
