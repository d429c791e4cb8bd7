"""Live-chat pages: continue any branch of a session, or start a new conversation.

The page renders the branch's history with the review UI's selectors and partials, and
``static/dashboard/js/chat.js`` does the rest over ``/ws/chat/<session_id>/?branch=...``
(protocol: docs/websocket-protocol.md). Both pages need login and the chat permissions
(``conversations.permissions.CHAT_PERMISSIONS``: view + continue, since continuing a
conversation shows it); without them, 403.
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from conversations.models import MAIN_BRANCH, AgentSession
from conversations.permissions import chatter_required
from dashboard.agents import backend_label, get_agent
from dashboard.links import chat_url, session_url
from dashboard.review.selectors import (
    BranchTree,
    TurnPage,
    branch_tree_get,
    session_traces_get,
    turn_page_get,
)
from dashboard.review.selectors.errors import BranchNotFound, SessionNotFound

from .finished import trace_url
from .protocol import MAX_MESSAGE_BYTES

__all__ = ["chat_new", "session_chat"]

#: Turns of history the chat page shows (the review page's "load earlier" brings the rest).
CHAT_HISTORY_TURNS = 20


def _history(
    session_id: str, branch_id: str, turn: int | None
) -> tuple[TurnPage | None, BranchTree | None, bool]:
    """(the branch's turns as the review page's ``TurnPage`` or ``None``, the session's branch
    tree or ``None``, the session exists).

    The latest turns, or the window around ``turn`` when one is asked for ("Fork from here").
    """
    try:
        tree = branch_tree_get(session_id=session_id)
    except SessionNotFound:
        # No messages yet: a new conversation, or a session row whose turns were all removed.
        return None, None, AgentSession.objects.filter(session_id=session_id).exists()
    if branch_id not in tree:
        return None, tree, True  # a new branch of an existing session starts empty
    try:
        page = turn_page_get(tree=tree, branch_id=branch_id, turn=turn, size=CHAT_HISTORY_TURNS)
    except BranchNotFound:
        return None, tree, True
    return page, tree, True


@require_GET
@chatter_required
def session_chat(request: HttpRequest, session_id: str) -> HttpResponse:
    """The chat page: the branch's history, an input box, streamed answers."""
    branch_id = request.GET.get("branch") or MAIN_BRANCH
    fork = request.GET.get("fork", "")
    fork_turn = int(fork) if fork.isdecimal() and 0 < len(fork) < 10 else None
    page, tree, exists = _history(session_id, branch_id, fork_turn)
    if page is None or fork_turn not in range(page.first, page.last + 1):
        fork_turn = None  # not a turn of this branch: a plain chat page
    turn_rows = None
    if page is not None and tree is not None:
        # Each turn with its trace line (model, latency, cost, waterfall), as on the session
        # page and in the chat's own turn_complete (dashboard.chat.finished).
        traces = session_traces_get(tree=tree)
        turn_rows = [(turn, traces.turn(branch_id, turn.number)) for turn in page.turns]
    context = {
        "session_id": session_id,
        "branch_id": branch_id,
        "page": page,
        "turn_rows": turn_rows,
        "trace_url": trace_url(session_id),
        "fork_turn": fork_turn,
        "session_exists": exists,
        "review_url": session_url(session_id, branch_id) if page else None,
        "ws_path": f"/ws/chat/{quote(session_id, safe='')}/",
        "backend": backend_label(get_agent()),
        "max_bytes": MAX_MESSAGE_BYTES,
    }
    return render(request, "dashboard/chat.html", context)


@require_http_methods(["GET", "POST"])
@chatter_required
def chat_new(request: HttpRequest) -> HttpResponseRedirect:
    """Start a new conversation: a fresh session id, straight to its chat page.

    Nothing is written until the first message is sent, so abandoned pages leave no rows.
    """
    session_id = f"chat-{timezone.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    return HttpResponseRedirect(chat_url(session_id))
