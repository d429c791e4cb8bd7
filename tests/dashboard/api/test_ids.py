"""Hostile ids and hostile input.

Ids are percent-encoded path segments. Here a real ASGI server (uvicorn, in a thread, serving
``dashboard.asgi.application`` as ``forkview serve`` does) receives the paths exactly as a
client writes them, so "/", "%2F", "?", "#", spaces, dots and non-ASCII text inside an id
stay inside its segment. Through Django's test client (no undecoded path) the pages' ``~``
form of an id works the same.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from urllib.parse import quote

import pytest
import uvicorn
from django.test import Client

from conversations.models import Annotation
from dashboard.asgi import application
from dashboard.links import SessionIdConverter
from tests.support.builders import Writer, turn_items
from tests.support.served import free_port

from .conftest import API, SID, SID_SEG

HOSTILE_IDS = [
    "a/b",
    "x%2Fy",  # a literal percent sign and "2F"
    "what?",
    "#hash",
    "café ☕/日本語",
    "x/usage",  # ends like a route of the API
    "x/branches/main/turns",
    "x/annotations",
    " spaced out ",
    "a//b",
    "..",
    "./x/../y",
    "~tilde",  # starts with the pages' mark: must be written in the pages' form
    "semi;colon&amp=1+plus",
]
BRANCH = "feature/x?#%2F é"


@pytest.fixture
def served(transactional_db):
    """A uvicorn server of the ASGI app on a free port, for the length of a test."""
    port = free_port()
    config = uvicorn.Config(
        application, host="127.0.0.1", port=port, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=20)


def _request(port: int, method: str, path: str, token: str, body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Host": "localhost"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data) if data else None


def _segment(value: str) -> str:
    """How a client writes an id: one percent-encoded segment (the pages' form for an id
    starting with "~", as documented)."""
    return SessionIdConverter().to_url(value) if value.startswith("~") else quote(value, safe="")


def test_hostile_ids_over_a_real_server(served, users, tokens, definitions):
    for sid in HOSTILE_IDS:
        w = Writer(sid)
        w.turn(turn_items(1, tool=True))
        w.turn(turn_items(2))
        w.branch(1, BRANCH)
        w.turn(turn_items(1, text="branched"))
    viewer, annotator = tokens["viewer"], tokens["annotator"]
    for sid in HOSTILE_IDS:
        s = API + "/sessions/" + _segment(sid)
        status, tree = _request(served, "GET", s + "/", viewer)
        assert status == 200 and tree["session"]["session_id"] == sid, (sid, status, tree)
        status, turns = _request(served, "GET", f"{s}/branches/{_segment(BRANCH)}/turns/", viewer)
        assert status == 200 and (turns["session_id"], turns["branch_id"]) == (sid, BRANCH), sid
        assert turns["items"][0]["user_text"] == "branched" and turns["total"] == 1
        status, usage = _request(
            served, "GET", f"{s}/usage/?branch={quote(BRANCH, safe='')}", viewer
        )
        assert status == 200 and usage["branch"] == BRANCH, sid
        body = json.dumps(
            {"kind": "score", "definition": "helpful", "value": 1, "branch_id": BRANCH, "turn": 1}
        )
        status, made = _request(served, "POST", s + "/annotations/", annotator, body.encode())
        assert status == 201 and (made["session_id"], made["branch_id"]) == (sid, BRANCH), (
            sid,
            made,
        )
        status, listed = _request(served, "GET", s + "/annotations/", viewer)
        assert status == 200 and [a["id"] for a in listed["items"]] == [made["id"]], sid
        status, review = _request(
            served, "PUT", s + "/review/", annotator, b'{"status": "reviewed"}'
        )
        assert status == 200 and review["session_id"] == sid
    # every annotation landed on its own session: none went to a prefix of an id
    assert sorted(Annotation.objects.values_list("session_id", flat=True)) == sorted(HOSTILE_IDS)
    # ...and the listing finds the ones the route tails could confuse
    status, page = _request(served, "GET", API + "/sessions/?per_page=100", viewer)
    assert {r["session_id"] for r in page["items"]} == set(HOSTILE_IDS)
    # a prefix of an id is not a session, and unencoded slashes do not reach another route
    assert _request(served, "GET", API + "/sessions/x/", viewer)[0] == 404
    assert _request(served, "GET", API + "/sessions/a/b/", viewer)[0] == 404
    # raw UTF-8 bytes in the path (a client that did not encode them) and undecodable bytes
    with socket.create_connection(("127.0.0.1", served), timeout=30) as raw:
        target = (API + "/sessions/café☕%2F日本語/").encode()
        raw.sendall(
            b"GET "
            + target
            + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            + f"Authorization: Bearer {viewer}\r\n\r\n".encode()
        )
        status_line = raw.recv(200).split(b"\r\n", 1)[0]
    assert status_line.split()[1] in (b"400", b"404"), status_line
    assert _request(served, "GET", API + "/sessions/%FF%FE/", viewer)[0] == 404
    assert _request(served, "GET", API + "/sessions/%00/", viewer)[0] == 404


# ---- Through the test client (no raw path): the pages' form ------------------------------------


def test_the_pages_form_of_ids(trip, caller):
    response = caller("viewer").get(f"{API}/sessions/{SID_SEG}/branches/bigger%20budget/turns/")
    assert response.status_code == 200 and response.json()["session_id"] == SID
    plain = Writer("plain café")
    plain.turn(turn_items(1))
    assert caller("viewer").get(f"{API}/sessions/{quote('plain café')}/").status_code == 200


@pytest.mark.parametrize(
    "segment", ["%00", "~AA", "a%00b", "%ED%A0%80", "~7aCA", "%FF", "..", "~", "~~"]
)
def test_ids_no_session_can_have_are_404(trip, caller, segment):
    response = caller("viewer").get(f"{API}/sessions/{segment}/annotations/")
    assert response.status_code == 404, (segment, response.content)
    assert response["Content-Type"].startswith("application/json")


# ---- Hostile bodies -----------------------------------------------------------------------------


def _post(caller, body, content_type="application/json"):
    return caller("annotator").send(
        "POST", f"{API}/sessions/{SID_SEG}/annotations/", body, content_type=content_type
    )


@pytest.mark.parametrize(
    "body",
    [
        "",
        "{",
        "not json",
        "[]",
        "null",
        '"a string"',
        '{"kind": "comment", "body": "x"',
        '{"kind": 5}',
        '{"kind": "essay", "body": "x"}',
        '{"kind": "comment", "body": ["x"]}',
        '{"kind": "comment", "body": {"$gt": ""}}',
        '{"kind": "comment", "body": "x", "turn": "two"}',
        '{"kind": "comment", "body": "x", "turn": -1}',
        '{"kind": "comment", "body": "x", "turn": 1e400}',
        '{"kind": "comment", "body": "x", "turn": 99999999999999999999999999}',
        '{"kind": "score", "definition": "helpful", "value": [1]}',
        '{"kind": "score", "definition": "helpful", "value": {"a": 1}}',
        '{"kind": "comment", "body": "x", "extra": 1}',
        '{"kind": "comment", "body": "\\ud800"}',
        '{"kind": "comment", "body": "' + "x" * 20_001 + '"}',
        "\x00",
        b"\xff\xfe\x00{",
        "[" * 10_000 + "]" * 10_000,
    ],
)
def test_hostile_bodies_are_4xx_json(trip, caller, definitions, body):
    response = _post(caller, body)
    assert 400 <= response.status_code < 500, (
        body[:80],
        response.status_code,
        response.content[:300],
    )
    assert response["Content-Type"].startswith("application/json")
    assert "detail" in response.json()
    assert not Annotation.objects.exists()


def test_wrong_content_type_is_4xx(trip, caller):
    response = _post(
        caller, "kind=comment&body=x", content_type="application/x-www-form-urlencoded"
    )
    assert 400 <= response.status_code < 500
    assert not Annotation.objects.exists()


def test_a_huge_body_is_413(trip, caller):
    body = json.dumps({"kind": "comment", "body": "x" * 3_000_000})
    response = _post(caller, body)
    assert response.status_code == 413
    assert response.json() == {"detail": "The request body is too large."}


def test_hostile_text_that_fits_is_stored_as_sent(trip, caller, users):
    text = "<script>alert(1)</script> ' \" \\ ☕ \u202e \U0001f600"
    response = _post(caller, {"kind": "comment", "body": text})
    assert response.status_code == 201 and response.json()["body"] == text
    assert Annotation.objects.get().body == text


def test_answers_are_display_safe():
    """Stored text no client could decode (a lone surrogate, which SQLite can hold) is sent
    as U+FFFD (conversations.items.display_value), in UTF-8."""
    from dashboard.api.api import DisplaySafeJSON

    text = DisplaySafeJSON().render(None, {"label": "bad \ud800 ☕", "n": [1]}, response_status=200)
    assert json.loads(text) == {"label": "bad \ufffd ☕", "n": [1]}
    text.encode("utf-8")  # encodable


def test_query_strings_with_nul_and_junk(trip, caller):
    viewer = caller("viewer")
    for query in ("?branch=%00", "?branch=%ED%A0%80", "?branch=" + "b" * 2000):
        response = viewer.get(f"{API}/sessions/{SID_SEG}/usage/{query}")
        assert response.status_code in (404, 422), (query, response.status_code)
    for query in ("?kind=%00", "?branch=%00", "?turn=-1", "?turn=x", "?page=0", "?per_page=100000"):
        response = viewer.get(f"{API}/sessions/{SID_SEG}/annotations/{query}")
        assert response.status_code == 422, (query, response.status_code)
    assert Client().get(f"{API}/sessions/?page=%00").status_code == 401  # auth first, no 500
