"""The NinjaAPI behind ``/api/v1/``: authentication, the routers, one JSON shape for errors.

Every error is JSON: ``{"detail": message}``, with ``"field"`` when one input is at fault;
422 lists what does not validate (``loc`` names the field). The OpenAPI document
(``openapi.json``) and the interactive docs (``docs``, Swagger UI served from this server: no
CDN) need the same credentials as the endpoints (the docs page: a signed-in viewer).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI, Swagger
from ninja.errors import AuthenticationError, HttpError
from ninja.openapi.views import openapi_view
from ninja.renderers import JSONRenderer
from ninja.responses import NinjaJSONEncoder

from conversations.items import display_value
from conversations.permissions import can_view
from dashboard.errors import RETRY_AFTER_SECONDS, database_unavailable

from . import annotations as annotation_routes
from . import sessions as session_routes
from . import traces as trace_routes
from .auth import CANNOT_VIEW, NO_CREDENTIALS, BearerToken, SessionCookie
from .errors import ApiError

__all__ = ["api"]

TOO_BIG = "The request body is too large."
MALFORMED = "The request is malformed."
UNAVAILABLE = "The database is unavailable; try again shortly."
SERVER_ERROR = "Server error."

#: Failures are logged where Django logs them (``dashboard.errors.QuietOutages`` applies).
_log = logging.getLogger("django.request")


class DisplaySafeJSON(JSONRenderer):
    """JSON whose strings are display-safe (``conversations.items.display_value``: stored text
    no client could decode, such as lone surrogates, becomes U+FFFD), in UTF-8."""

    def render(self, request: HttpRequest, data: Any, *, response_status: int) -> Any:
        return json.dumps(display_value(data), cls=NinjaJSONEncoder, ensure_ascii=False)


_View = Callable[..., HttpResponse]


def _docs_access(view: _View) -> _View:
    """The OpenAPI document and the docs page: a viewer's bearer token or session; else the
    document answers 401 and the page sends to the login page."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            user = BearerToken()(request)  # None, or a viewer
        except HttpError as exc:  # a valid token of someone who may not view
            return JsonResponse({"detail": str(exc)}, status=exc.status_code)
        if user is None and request.user.is_authenticated:
            user = request.user
        if user is None:
            if getattr(view, "func", None) is openapi_view:
                return redirect_to_login(request.get_full_path())
            response = JsonResponse({"detail": NO_CREDENTIALS}, status=401)
            response["WWW-Authenticate"] = "Bearer"
            return response
        if not can_view(user):
            return JsonResponse({"detail": CANNOT_VIEW}, status=403)
        return view(request, *args, **kwargs)

    return wrapper


api = NinjaAPI(
    title="Forkview API",
    version="1",
    description=(
        "Sessions, turns, usage, traces, annotations and review statuses of Forkview. "
        "Authenticate with `Authorization: Bearer <token>` (create one at /account/tokens/) or "
        "the session cookie (then send X-CSRFToken for unsafe methods). Session and branch ids "
        "are percent-encoded path segments (`quote(id, safe='')`)."
    ),
    auth=[BearerToken(), SessionCookie()],
    renderer=DisplaySafeJSON(),
    docs=Swagger(settings={"persistAuthorization": False, "tryItOutEnabled": False}),
    docs_decorator=_docs_access,
    urls_namespace="api-v1",
)
api.add_router("", session_routes.router)
api.add_router("", annotation_routes.router)
api.add_router("", trace_routes.router)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return api.create_response(
        request, {"detail": exc.message, "field": exc.field}, status=exc.status_code
    )


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = api.create_response(request, {"detail": NO_CREDENTIALS}, status=401)
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return api.create_response(request, {"detail": exc.message}, status=exc.status_code)


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return api.create_response(request, {"detail": TOO_BIG}, status=413)


@api.exception_handler(SuspiciousOperation)
def _malformed(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
    return api.create_response(request, {"detail": MALFORMED}, status=400)


@api.exception_handler(Exception)
def _failed(request: HttpRequest, exc: Exception) -> HttpResponse:
    """Anything else: a database outage is 503 (``Retry-After``, as the pages), a bug 500;
    both JSON, logged with the traceback (an outage as one line)."""
    _log.error("API request failed: %s", request.path, exc_info=exc)
    if database_unavailable(exc):
        response = api.create_response(request, {"detail": UNAVAILABLE}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return api.create_response(request, {"detail": SERVER_ERROR}, status=500)
