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


def _history(session_id: str, branch_id: str) -> tuple[Any, bool]:
    """(the branch's latest turns as the review page's ``TurnPage`` or ``None``, exists)."""
    exists = AgentSession.objects.filter(session_id=session_id).exists()
    if not exists:
        return None, False
    tree = selectors.branch_tree_get(session_id=session_id)
    if branch_id not in tree:
        return None, True
    return selectors.turn_page_get(tree=tree, branch_id=branch_id, size=CHAT_HISTORY_TURNS), True


@require_GET
@chatter_required
def session_chat(request: HttpRequest, session_id: str) -> HttpResponse:
    """The chat page: the branch's history, an input box, streamed answers."""
    branch_id = request.GET.get("branch") or MAIN_BRANCH
    page, exists = _history(session_id, branch_id)
    context = {
        "session_id": session_id,
        "branch_id": branch_id,
        "page": page,
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
