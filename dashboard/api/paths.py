"""Session and branch ids as percent-encoded path segments.

An id may hold anything: "/", "%", "?", "#", spaces, non-ASCII text. A client writes each id as
one percent-encoded segment (``quote(id, safe="")``: ``a/b`` is ``a%2Fb``). The server decodes
the path before Django routes it, so ``/sessions/a%2Fb/usage/`` would reach Django as
``/sessions/a/b/usage/``, ambiguous (session ``a/b``, or ``a/b/usage``?). So every request
under ``/api/v1/`` reaches the view of :func:`dispatcher`, which routes it on the path as the
client sent it (the ASGI scope's ``raw_path``, which daphne and uvicorn give): each id is one
segment, then decoded. A server that gives no raw path (Django's test client) is routed on
the decoded path, where an id holding "/" cannot be one segment.

Either way an id may also be written as the pages write it (``dashboard.links``: ``~`` and
the id's base64url text), so an id copied from a page URL works here too; an id that itself
starts with ``~`` must be written that way (as on the pages).

An unknown path under ``/api/v1/`` is a JSON 404, never the HTML page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, URLResolver
from django.urls.exceptions import Resolver404
from django.urls.resolvers import RegexPattern
from django.views.decorators.csrf import csrf_exempt

from conversations.text import column_problem
from dashboard.links import SessionIdConverter

__all__ = ["ID_PARAMETERS", "NOT_FOUND", "decoded_segment", "dispatcher", "id_from_path"]

#: The path parameters that are session or branch ids.
ID_PARAMETERS = frozenset({"session_id", "branch_id"})
NOT_FOUND = "Not found: no API endpoint at this path (see /api/v1/docs)."

_CONVERTER = SessionIdConverter()


def decoded_segment(segment: str) -> str:
    """A percent-encoded path segment as text: UTF-8 (lone surrogates allowed, as the pages
    encode them); bytes that are not UTF-8 become U+FFFD (an id that then matches nothing)."""
    try:
        return unquote(segment, errors="surrogatepass")
    except UnicodeDecodeError:
        return unquote(segment, errors="replace")


def id_from_path(value: str) -> str:
    """An id from its (decoded) segment: as is, or the pages' ``~`` form decoded."""
    return str(_CONVERTER.to_python(value))


def _raw_tail(request: HttpRequest, prefix: str) -> str | None:
    """The path after ``prefix`` as the client sent it (still percent-encoded), or ``None``
    when the server gave no raw path (or one that does not start with ``prefix``)."""
    scope = getattr(request, "scope", None)
    raw = scope.get("raw_path") if isinstance(scope, dict) else None
    if not isinstance(raw, bytes | bytearray):
        return None
    text = bytes(raw).decode("latin-1").split("?", 1)[0]
    root = str(scope.get("root_path") or "") if isinstance(scope, dict) else ""
    if root and text.startswith(root):
        text = text[len(root) :]
    if not text.startswith(prefix):
        return None
    # Bytes outside ASCII (a client that did not encode them) as their percent form.
    return "".join(c if ord(c) < 128 else f"%{ord(c):02X}" for c in text[len(prefix) :])


def dispatcher(
    patterns: Sequence[URLPattern | URLResolver], *, prefix: str
) -> Callable[[HttpRequest], HttpResponse]:
    """The one view of everything under ``prefix`` (``"/api/v1/"``): resolves the rest of the
    path against ``patterns`` (the NinjaAPI's), raw if it can, and calls the endpoint with
    decoded ids. CSRF is the endpoints' business (ninja checks it for cookie auth)."""
    resolver = URLResolver(RegexPattern(r"^"), list(patterns))

    @csrf_exempt
    def dispatch(request: HttpRequest) -> HttpResponse:
        raw = _raw_tail(request, prefix)
        tail = raw if raw is not None else request.path_info.removeprefix(prefix)
        try:
            match = resolver.resolve(tail)
        except Resolver404:
            return JsonResponse({"detail": NOT_FOUND}, status=404)
        kwargs: dict[str, Any] = {}
        for name, value in match.kwargs.items():
            if raw is not None and isinstance(value, str):
                value = decoded_segment(value)
            if name in ID_PARAMETERS and isinstance(value, str):
                value = id_from_path(value)
                if column_problem(value):  # no stored id holds a NUL or a lone surrogate
                    what = "session" if name == "session_id" else "branch"
                    return JsonResponse({"detail": f"No such {what}.", "field": name}, status=404)
            kwargs[name] = value
        request.resolver_match = match
        try:
            response: HttpResponse = match.func(request, *match.args, **kwargs)
        except Http404:  # the API's root (ninja's placeholder view)
            return JsonResponse({"detail": NOT_FOUND}, status=404)
        if response.status_code == 405 and "json" not in response.get("Content-Type", ""):
            allowed = response.get("Allow", "")
            response = JsonResponse(
                {"detail": f"Method {request.method} not allowed here; allowed: {allowed}."},
                status=405,
            )
            response["Allow"] = allowed
        return response

    return dispatch
