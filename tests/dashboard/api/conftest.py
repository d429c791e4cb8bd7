"""Users of every kind, their tokens, score definitions and a session for the API tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from conversations.models import ScoreDefinition
from conversations.reviews import token_create, token_revoke
from tests.conftest import grant
from tests.support.builders import trip_session

API = "/api/v1"
#: The session of most tests: an id with a slash and a space (trip_session's branches).
SID = "demo/trip one"
#: The id as one percent-encoded segment: what a client sends. Daphne and uvicorn give the
#: app the undecoded path (test_ids.py sends it so); Django's test client decodes the path
#: first, so through it a "/" in an id cannot stay inside its segment...
SID_PATH = "demo%2Ftrip%20one"
#: ...and the tests that use it send the pages' form of the id (dashboard.links: "~" and
#: base64url), which every server carries.
SID_SEG = "~ZGVtby90cmlwIG9uZQ"

#: The kinds of caller, as the tests name them.
KINDS = (
    "anonymous",
    "nobody",  # a token of a user without any Forkview permission
    "viewer",
    "annotator",
    "staff",
    "revoked",  # the viewer's revoked token
    "inactive",  # a token of an inactive annotator
)


@dataclass
class Caller:
    """A test client that sends one kind of credential."""

    client: Client
    token: str | None = None

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, headers=self._headers(kw.pop("headers", None)), **kw)

    def send(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        import json

        data = body if isinstance(body, str | bytes) else json.dumps(body)
        call = getattr(self.client, method.lower())
        return call(
            path,
            data=data,
            content_type=kw.pop("content_type", "application/json"),
            headers=self._headers(kw.pop("headers", None)),
            **kw,
        )


@pytest.fixture
def users(db, django_user_model):
    made = {}
    made["nobody"] = django_user_model.objects.create_user(username="nobody")
    made["viewer"] = grant(
        django_user_model.objects.create_user(username="viewer"), "view_agentsession"
    )
    made["annotator"] = grant(
        django_user_model.objects.create_user(username="annotator"),
        "view_agentsession",
        "annotate",
    )
    made["other_annotator"] = grant(
        django_user_model.objects.create_user(username="other"), "view_agentsession", "annotate"
    )
    made["staff"] = django_user_model.objects.create_user(
        username="staff", is_staff=True, is_superuser=True
    )
    made["inactive"] = grant(
        django_user_model.objects.create_user(username="gone"), "view_agentsession", "annotate"
    )
    return made


@pytest.fixture
def tokens(users):
    raw = {}
    for kind in ("nobody", "viewer", "annotator", "other_annotator", "staff", "inactive"):
        raw[kind] = token_create(user=users[kind], name=f"{kind} script")[1]
    revoked, raw["revoked"] = token_create(user=users["viewer"], name="old")
    token_revoke(token=revoked)
    users["inactive"].is_active = False
    users["inactive"].save()
    return raw


@pytest.fixture
def caller(tokens):
    """``caller(kind)``: a client sending ``kind``'s token (none for anonymous)."""

    def make(kind: str) -> Caller:
        return Caller(Client(), None if kind == "anonymous" else tokens[kind])

    return make


@pytest.fixture
def definitions(db):
    return {
        "helpful": ScoreDefinition.objects.create(name="helpful", kind="boolean", position=0),
        "quality": ScoreDefinition.objects.create(
            name="quality", kind="numeric", min_value=1, max_value=5, position=1
        ),
        "failure": ScoreDefinition.objects.create(
            name="failure", kind="categorical", labels=["none", "tool", "facts"], position=2
        ),
        "old": ScoreDefinition.objects.create(name="old", kind="boolean", archived=True),
    }


@pytest.fixture
def trip(db):
    """main: 6 turns; 'tokyo' from turn 3; 'tokyo/nikko'; 'bigger budget' (builders)."""
    trip_session(SID)
    return SID
