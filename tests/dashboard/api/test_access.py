"""Who may call what: every endpoint × every kind of caller (tokens and the session cookie).

Outcomes: reads need the view permission, annotation and review writes the annotate
permission too; changing or deleting an annotation is for its author only. No credentials,
a revoked token and a token of an inactive user are all 401 (JSON, ``WWW-Authenticate``).
"""

from __future__ import annotations

import pytest
from django.test import Client

from conversations.models import Annotation, AuditEntry
from conversations.reviews import Target, comment_add
from dashboard.api.auth import CANNOT_ANNOTATE, CANNOT_VIEW, CSRF_FAILED, NO_CREDENTIALS

from .conftest import API, KINDS, SID_SEG

pytestmark = pytest.mark.django_db

READ = ("401", "403", "200", "200", "200", "401", "401")
WRITE = ("401", "403", "403", "2xx", "2xx", "401", "401")

#: (method, path, JSON body) -> outcome per kind (KINDS order).
MATRIX = {
    ("GET", "/sessions/", None): READ,
    ("GET", f"/sessions/{SID_SEG}/", None): READ,
    ("GET", f"/sessions/{SID_SEG}/branches/main/turns/", None): READ,
    ("GET", f"/sessions/{SID_SEG}/usage/?branch=tokyo", None): READ,
    ("GET", f"/sessions/{SID_SEG}/annotations/", None): READ,
    ("POST", f"/sessions/{SID_SEG}/annotations/", '{"kind": "comment", "body": "hi"}'): WRITE,
    ("PATCH", "/annotations/{own}/", '{"body": "edited"}'): WRITE,
    ("DELETE", "/annotations/{own}/", None): WRITE,
    ("GET", "/score-definitions/", None): READ,
    ("GET", f"/sessions/{SID_SEG}/review/", None): READ,
    ("PUT", f"/sessions/{SID_SEG}/review/", '{"status": "in_review"}'): WRITE,
    ("GET", "/openapi.json", None): READ,
}


def _outcome(response) -> str:
    code = response.status_code
    return (
        "2xx"
        if code in (201, 204) or (code == 200 and response.request["REQUEST_METHOD"] != "GET")
        else str(code)
    )


@pytest.mark.parametrize("key", list(MATRIX), ids=[f"{m} {p}" for m, p, _ in MATRIX])
def test_matrix(trip, users, caller, key):
    method, path, body = key
    got = {}
    for kind in KINDS:
        author = users.get(kind, users["annotator"])
        own = comment_add(user=author, target=Target(trip, "main", 2), body="mine")
        url = API + path.replace("{own}", str(own.pk))
        who = caller(kind)
        response = who.get(url) if method == "GET" else who.send(method, url, body)
        got[kind] = _outcome(response)
        assert (
            response["Content-Type"].startswith("application/json") or response.status_code == 204
        )
        if response.status_code == 401:
            assert response.json() == {"detail": NO_CREDENTIALS}
            assert response["WWW-Authenticate"] == "Bearer"
        if response.status_code == 403:
            assert response.json()["detail"] in (CANNOT_VIEW, CANNOT_ANNOTATE)
    assert tuple(got[k] for k in KINDS) == MATRIX[key], got


def test_editing_someone_elses_annotation_is_403(trip, users, caller):
    theirs = comment_add(user=users["other_annotator"], target=Target(trip), body="theirs")
    for method, body in (("PATCH", {"body": "mine now"}), ("DELETE", None)):
        response = caller("annotator").send(method, f"{API}/annotations/{theirs.pk}/", body)
        assert response.status_code == 403
        assert (
            response.json()["detail"] == "Only the author of an annotation can change or delete it."
        )
    # staff is no exception for changes: annotations belong to their authors...
    response = caller("staff").send("PATCH", f"{API}/annotations/{theirs.pk}/", {"body": "x"})
    assert response.status_code == 403
    theirs.refresh_from_db()
    assert theirs.body == "theirs"
    # ...but a superuser holds the moderation permission: deleting is moderation (audited;
    # tests/dashboard/api/test_moderation_api.py).
    response = caller("staff").send("DELETE", f"{API}/annotations/{theirs.pk}/")
    assert response.status_code == 204


def test_a_token_stops_working_once_revoked(trip, users):
    from conversations.models import ApiToken
    from conversations.reviews import token_create, token_revoke

    token, raw = token_create(user=users["viewer"], name="ci")
    client = Client(headers={"Authorization": f"Bearer {raw}"})
    assert client.get(f"{API}/sessions/").status_code == 200
    token_revoke(token=ApiToken.objects.get(pk=token.pk))
    assert client.get(f"{API}/sessions/").status_code == 401


def test_garbage_credentials_are_401(trip, db):
    for header in (
        "Bearer",
        "Bearer ",
        "Bearer fv_nope",
        "Basic dXNlcjpwYXNz",
        "Token x",
        "Bearer " + "x" * 5000,
        "bearer fv_\x00",
    ):
        response = Client().get(f"{API}/sessions/", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.json() == {"detail": NO_CREDENTIALS}


# ---- The session cookie ----------------------------------------------------------------------


def _cookie_client(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def _csrf(client: Client) -> str:
    client.get("/account/tokens/")  # any page with a form sets the CSRF cookie
    return client.cookies["csrftoken"].value


def test_cookie_reads_need_no_csrf(trip, users):
    client = _cookie_client(users["viewer"])
    assert client.get(f"{API}/sessions/{SID_SEG}/annotations/").status_code == 200


def test_cookie_writes_need_csrf(trip, users):
    client = _cookie_client(users["annotator"])
    url = f"{API}/sessions/{SID_SEG}/annotations/"
    body = '{"kind": "comment", "body": "from the browser"}'
    response = client.post(url, body, content_type="application/json")
    assert response.status_code == 403
    assert response.json() == {"detail": CSRF_FAILED}
    assert not Annotation.objects.exists()
    token = _csrf(client)
    response = client.post(
        url, body, content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert response.status_code == 201, response.content
    assert response.json()["author"] == "annotator"
    # a wrong token is refused as a missing one
    response = client.post(
        url, body, content_type="application/json", headers={"X-CSRFToken": "x" * 64}
    )
    assert response.status_code == 403


def test_a_token_needs_no_csrf_even_beside_a_cookie(trip, users, tokens):
    client = _cookie_client(users["viewer"])  # a viewer's cookie...
    _csrf(client)
    response = client.post(  # ...and an annotator's token: the token speaks, no CSRF needed
        f"{API}/sessions/{SID_SEG}/annotations/",
        '{"kind": "tag", "label": "api"}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {tokens['annotator']}"},
    )
    assert response.status_code == 201
    assert response.json()["author"] == "annotator"


def test_cookie_of_a_user_without_permission_is_403(trip, users):
    client = _cookie_client(users["nobody"])
    response = client.get(f"{API}/sessions/")
    assert response.status_code == 403
    assert response.json() == {"detail": CANNOT_VIEW}


def test_every_write_is_audited_with_its_actor(trip, users, caller, definitions):
    response = caller("annotator").send(
        "POST",
        f"{API}/sessions/{SID_SEG}/annotations/",
        {"kind": "score", "definition": "helpful", "value": True},
    )
    assert response.status_code == 201
    entry = AuditEntry.objects.get()
    assert entry.actor == users["annotator"] and entry.action == "created" and entry.kind == "score"


# ---- The docs -------------------------------------------------------------------------------


def test_docs_page_needs_a_signed_in_viewer(trip, users, caller):
    assert Client().get(f"{API}/docs").status_code == 302
    assert Client().get(f"{API}/docs")["Location"].startswith("/accounts/login/")
    client = Client()
    client.force_login(users["nobody"])
    assert client.get(f"{API}/docs").status_code == 403
    client.force_login(users["viewer"])
    response = client.get(f"{API}/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
