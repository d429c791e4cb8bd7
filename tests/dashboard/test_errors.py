"""The server-error view: a database that does not answer is a 503 page, anything else a 500.

The real outage (PostgreSQL stopped under a served deployment) is a drill in
``tests/test_drills.py``; here the views raise the exceptions Django raises then.
"""

from __future__ import annotations

import logging

import pytest
from django.db import InterfaceError, OperationalError
from django.test import Client
from django.urls import path

from dashboard.errors import RETRY_AFTER_SECONDS, database_unavailable


def _raises(exc: Exception):
    def view(request):
        raise exc

    return view


def _chained() -> Exception:
    try:
        raise OperationalError("connection refused")
    except OperationalError as cause:
        try:
            raise RuntimeError("while loading the session") from cause
        except RuntimeError as exc:
            return exc


urlpatterns = [
    path("operational/", _raises(OperationalError("server closed the connection"))),
    path("interface/", _raises(InterfaceError("connection already closed"))),
    path("chained/", _raises(_chained())),
    path("bug/", _raises(ValueError("a bug"))),
]
handler500 = "dashboard.errors.server_error"


@pytest.fixture
def client(settings):
    settings.ROOT_URLCONF = __name__
    settings.DEBUG = False
    return Client(raise_request_exception=False)


@pytest.mark.parametrize("url", ["/operational/", "/interface/", "/chained/"])
def test_a_database_outage_is_a_503_page(client, url):
    response = client.get(url)
    assert response.status_code == 503
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    body = response.content.decode()
    assert "temporarily unavailable" in body and "Nothing you saved is lost" in body
    assert "Traceback" not in body and "connection" not in body  # nothing of the error


def test_any_other_error_is_the_500_page(client):
    response = client.get("/bug/")
    assert response.status_code == 500
    assert "Something went wrong" in response.content.decode()
    assert "a bug" not in response.content.decode()


def test_the_project_uses_the_view():
    from dashboard import urls

    assert urls.handler500 == "dashboard.errors.server_error"


def test_database_unavailable_follows_causes_and_stops_on_cycles():
    assert database_unavailable(_chained())
    assert not database_unavailable(ValueError("x"))
    assert not database_unavailable(None)
    a, b = ValueError("a"), ValueError("b")
    a.__context__, b.__context__ = b, a
    assert not database_unavailable(a)


def test_an_outage_logs_one_line_a_bug_its_traceback(client, caplog):
    with caplog.at_level(logging.ERROR, logger="django.request"):
        client.get("/operational/")
        client.get("/bug/")
    outage, bug = [r for r in caplog.records if r.name == "django.request"]
    assert outage.exc_info is None
    assert outage.getMessage() == (
        "Service Unavailable: /operational/ "
        "(database unavailable: OperationalError: server closed the connection)"
    )
    assert bug.exc_info is not None and bug.getMessage() == "Internal Server Error: /bug/"
