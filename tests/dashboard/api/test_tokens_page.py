"""The token page (/account/tokens/): my tokens, a new one shown once, revoking."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.test import Client

from conversations.models import ApiToken
from conversations.reviews import token_authenticate, token_create

pytestmark = pytest.mark.django_db

URL = "/account/tokens/"


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_login_and_view_permission_required(users):
    response = Client().get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert _client(users["nobody"]).get(URL).status_code == 403
    assert _client(users["nobody"]).post(URL, {"action": "create", "name": "x"}).status_code == 403
    assert not ApiToken.objects.exists()
    assert _client(users["viewer"]).get(URL).status_code == 200


def test_lists_only_my_tokens(users):
    token_create(user=users["viewer"], name="mine")
    token_create(user=users["annotator"], name="theirs")
    html = _client(users["viewer"]).get(URL).content.decode()
    assert "mine" in html and "theirs" not in html


def test_a_new_token_is_shown_once_and_works(users):
    client = _client(users["viewer"])
    response = client.post(URL, {"action": "create", "name": "nightly export"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    raw = re.search(r'value="(fv_[^"]+)"', html).group(1)
    token = ApiToken.objects.get(user=users["viewer"])
    assert token.name == "nightly export" and token.prefix == raw[:10]
    assert token.digest == hashlib.sha256(raw.encode()).hexdigest() and raw not in token.digest
    assert token_authenticate(raw=raw) == users["viewer"]
    again = client.get(URL).content.decode()
    assert raw not in again and token.prefix in again and "nightly export" in again
    api = Client(headers={"Authorization": f"Bearer {raw}"})
    assert api.get("/api/v1/sessions/").status_code == 200


def test_revoke_mine_only(users):
    mine, raw = token_create(user=users["viewer"], name="mine")
    theirs, _ = token_create(user=users["annotator"], name="theirs")
    client = _client(users["viewer"])
    refused = client.post(URL, {"action": "revoke", "token": str(theirs.pk)})
    assert refused.status_code == 400 and "No such token" in refused.content.decode()
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    response = client.post(URL, {"action": "revoke", "token": str(mine.pk)}, follow=True)
    assert response.status_code == 200 and "no longer works" in response.content.decode()
    mine.refresh_from_db()
    assert mine.revoked_at is not None and token_authenticate(raw=raw) is None
    assert "revoked" in response.content.decode()


@pytest.mark.parametrize(
    "data",
    [
        {"action": "create", "name": ""},
        {"action": "create", "name": "   "},
        {"action": "create", "name": "x" * 101},
        {"action": "create", "name": "a\x00b"},
        {"action": "create"},
        {"action": "revoke", "token": "abc"},
        {"action": "revoke", "token": "99999999999999999999999999"},
        {"action": "revoke", "token": "-1"},
        {"action": "revoke"},
        {"action": "explode"},
        {},
    ],
)
def test_bad_posts_are_400(users, data):
    response = _client(users["viewer"]).post(URL, data)
    assert response.status_code == 400
    assert not ApiToken.objects.filter(revoked_at__isnull=False).exists()
    assert ApiToken.objects.count() == 0


def test_csrf_is_enforced(users):
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["viewer"])
    assert client.post(URL, {"action": "create", "name": "x"}).status_code == 403
    assert not ApiToken.objects.exists()


def test_the_user_menu_links_here(users):
    html = _client(users["viewer"]).get("/").content.decode()
    assert f'href="{URL}"' in html
