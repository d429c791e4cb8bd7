"""The server-error view (``handler500``): a database outage is a 503, anything else a 500.

Django calls ``handler500`` inside the ``except`` block of the uncaught exception (on ASGI,
asgiref re-raises it in the worker thread), so :func:`sys.exc_info` says what failed. A
database that does not answer (PostgreSQL restarting, the connection pool exhausted, SQLite
locked past its timeout) raises ``OperationalError`` or ``InterfaceError``: that is no bug of
the page and goes away by itself, so the visitor gets ``503 Service Unavailable`` with
``Retry-After`` and a page that says so (``templates/503.html``); load balancers and
monitoring see the same status as ``/healthz`` gives. Both templates are plain HTML without the
base layout: they must render when the database (the login, the session) is gone.

:class:`QuietOutages` (on the ``django.request`` logger, ``settings.LOGGING``) makes such a
request one log line naming the error instead of a traceback each: an outage fails every
request at once, and the tracebacks would bury everything else in the log.
"""

from __future__ import annotations

import logging
import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.template import loader

__all__ = ["RETRY_AFTER_SECONDS", "QuietOutages", "database_unavailable", "server_error"]

#: What ``Retry-After`` says on the 503 page.
RETRY_AFTER_SECONDS = 5


def database_unavailable(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the database did not answer."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OperationalError | InterfaceError):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: the 503 page for a database outage, else the 500 page."""
    if database_unavailable(sys.exc_info()[1]):
        response = HttpResponse(loader.render_to_string("503.html"), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return HttpResponse(loader.render_to_string("500.html"), status=500)


class QuietOutages(logging.Filter):
    """A request failed by the database being unavailable logs one line, not a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and database_unavailable(exc):
            detail = (str(exc).strip().splitlines() or [""])[0][:200]
            record.msg = f"{record.msg} (database unavailable: {type(exc).__name__}: %s)"
            record.args = (*(record.args or ()), detail)
            record.exc_info = None
            record.exc_text = None
        return True
