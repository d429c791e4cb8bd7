"""The token page (``/account/tokens/``): a user's own API tokens, listed, created, revoked.

A new token is shown once, in the answer to the form that created it (never stored, never
shown again: ``conversations.reviews`` keeps only its digest), with ``Cache-Control:
no-store``. Anyone who may view sessions may manage their own tokens; staff manage
everyone's in the admin.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods

from conversations.models import ApiToken
from conversations.permissions import reviewer_required
from conversations.reviews import ReviewError, token_create, token_revoke

__all__ = ["tokens"]

#: Most tokens listed (newest first); a user with more sees a note.
TOKEN_LIMIT = 200


def _page(request: HttpRequest, user: Any, **context: Any) -> HttpResponse:
    mine = ApiToken.objects.filter(user=user).order_by("-created_at", "-id")
    rows = list(mine[: TOKEN_LIMIT + 1])
    response = render(
        request,
        "dashboard/tokens.html",
        {
            "tokens": rows[:TOKEN_LIMIT],
            "more": len(rows) > TOKEN_LIMIT,
            **context,
        },
        status=400 if context.get("error") else 200,
    )
    add_never_cache_headers(response)
    return response


@require_http_methods(["GET", "POST"])
@reviewer_required
def tokens(request: HttpRequest) -> HttpResponse:
    """GET: the list. POST ``action=create`` + ``name``: a new token, shown once; POST
    ``action=revoke`` + ``token`` (its id): revoke one of mine."""
    user = request.user
    if not user.is_authenticated:  # (reviewer_required let only signed-in users in)
        raise PermissionDenied
    if request.method == "GET":
        return _page(request, user)
    action = request.POST.get("action")
    if action == "create":
        name = request.POST.get("name", "")
        try:
            token, raw = token_create(user=user, name=name)
        except ReviewError as exc:
            return _page(request, user, error=str(exc), name=name[:100])
        return _page(request, user, created=token, raw=raw)
    if action == "revoke":
        ident = request.POST.get("token", "")
        found: ApiToken | None = None
        if ident.isascii() and ident.isdigit() and len(ident) < 19:
            found = ApiToken.objects.filter(user=user, pk=int(ident)).first()
        if found is None:
            return _page(request, user, error="No such token of yours.")
        token_revoke(token=found)
        messages.success(request, f"Revoked “{found.name}”: it no longer works.")
        return redirect("api_tokens")
    return HttpResponseBadRequest("Unknown action.")
