"""Live-chat pages: continue any branch of a session, or start a new conversation.

The page renders the branch's history with the review UI's selectors and partials, and
``static/dashboard/js/chat.js`` does the rest over ``/ws/chat/<session_id>/?branch=...``
(protocol: docs/websocket-protocol.md). Both pages need login + ``continue_conversation``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from conversations.models import MAIN_BRANCH, AgentSession

from . import selectors
from .agents import backend_label, get_agent
from .chat_turns import MAX_MESSAGE_BYTES

CHAT_PERMISSION = "conversations.continue_conversation"
CHAT_HISTORY_TURNS = 20


def chatter_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Anonymous -> login page; logged in without the chat permission -> 403."""
    return login_required(permission_required(CHAT_PERMISSION, raise_exception=True)(view))


def chat_url(session_id: str, branch_id: str = MAIN_BRANCH) -> str:
    """The chat page of a branch."""
    url = reverse("session_chat", kwargs={"session_id": session_id})
    return f"{url}?{urlencode({'branch': branch_id})}"


def _history(session_id: str, branch_id: str, turn: int | None) -> tuple[Any, bool]:
    """(the branch's turns as the review page's ``TurnPage`` or ``None``, exists).

    The latest turns, or the window around ``turn`` when one is asked for ("Fork from here").
    """
    exists = AgentSession.objects.filter(session_id=session_id).exists()
    if not exists:
        return None, False
    tree = selectors.branch_tree_get(session_id=session_id)
    if branch_id not in tree:
        return None, True
    page = selectors.turn_page_get(
        tree=tree, branch_id=branch_id, turn=turn, size=CHAT_HISTORY_TURNS
    )
    return page, True


@require_GET
@chatter_required
def session_chat(request: HttpRequest, session_id: str) -> HttpResponse:
    """The chat page: the branch's history, an input box, streamed answers."""
    branch_id = request.GET.get("branch") or MAIN_BRANCH
    fork = request.GET.get("fork", "")
    fork_turn = int(fork) if fork.isdecimal() and 0 < len(fork) < 10 else None
    page, exists = _history(session_id, branch_id, fork_turn)
    if page is None or fork_turn not in range(page.first, page.last + 1):
        fork_turn = None  # not a turn of this branch: a plain chat page
    context = {
        "session_id": session_id,
        "branch_id": branch_id,
        "page": page,
        "fork_turn": fork_turn,
        "session_exists": exists,
        "review_url": selectors.session_url(session_id, branch_id) if page else None,
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
