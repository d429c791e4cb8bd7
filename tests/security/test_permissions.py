"""The permission matrix: every role × every URL of ``dashboard.urls`` and both sockets (issue 12).

Roles (columns of the tables below):

=============  ==================================================================
anonymous      not logged in
nobody         logged in, no Forkview permission
viewer         ``view_agentsession``
chat_only      ``continue_conversation`` only (continuing needs viewing: it gets nothing)
viewer_chat    ``view_agentsession`` + ``continue_conversation``
staff          ``is_staff`` + ``is_superuser`` (the admin operator)
=============  ==================================================================

Outcomes: ``200``/``303``/``403``/``404``/``405`` are status codes; ``login`` is a redirect to
the sign-in page (``/accounts/login/?next=...``), ``admin`` a redirect to the admin's own
(``/admin/login/?next=...``), ``home`` a redirect to ``/``, ``chat`` a redirect to a new chat
page, ``refused`` either a 403 or a redirect back to the object's change page with a message
(the admin refusing a write that would break an invariant: access was granted, the write is
not). Every route the URLconf has must have a row (a new route without one fails
:func:`test_every_route_of_the_urlconf_has_a_row`).
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db import connections
from django.urls import URLPattern, URLResolver, get_resolver

from conversations import reviews
from conversations.models import (
    AgentMessage,
    AgentSession,
    Annotation,
    ApiToken,
    AuditEntry,
    MessageStructure,
    PreferredBranch,
    ScoreDefinition,
    SessionClearGeneration,
    SessionReview,
    TurnUsage,
)
from dashboard.asgi import application
from dashboard.chat import consumers
from tests.conftest import grant
from tests.support.auth import cookie_header
from tests.support.builders import Writer, turn_items

ROLES = ("anonymous", "nobody", "viewer", "chat_only", "viewer_chat", "staff")
SESSION = "s-matrix"

# The same outcome for every role but staff (the admin) / every role.
_ADMIN = ("admin", "admin", "admin", "admin", "admin", "200")
_ADMIN_POST_ONLY = ("admin", "admin", "admin", "admin", "admin", "405")
_REVIEW = ("login", "403", "200", "403", "200", "200")
_CHAT = ("login", "403", "403", "403", "200", "200")
_API = ("401", "403", "200", "403", "200", "200")

# ---- The table: route (as the URLconf spells it) -> what GET answers, per role -------------

GET_MATRIX: dict[str, tuple[str, ...]] = {
    # Sign-in: anyone may see the form; a logged-in user is sent home.
    "accounts/login/": ("200", "home", "home", "home", "home", "home"),
    "accounts/logout/": ("405",) * 6,  # POST only (Django 5)
    # For load balancers: no login, answers only ok / unavailable (tests/dashboard/test_health.py).
    "healthz": ("200",) * 6,
    # Exports (conversations/views.py): view permission.
    "sessions/<sid:session_id>/export/<str:fmt>/": _REVIEW,
    "sessions/<path:session_id>/export/<str:fmt>/": _REVIEW,
    # The live chat: view + continue (continuing a conversation shows it).
    "chat/new/": ("login", "403", "403", "403", "chat", "chat"),
    "sessions/<sid:session_id>/chat/": _CHAT,
    # The review pages: view permission.
    "": _REVIEW,
    "sessions/<sid:session_id>/usage.json": _REVIEW,
    # A turn's spans (the waterfall): view permission; asked without ?turn= it is a 400.
    "sessions/<sid:session_id>/trace.json": ("login", "403", "400", "403", "400", "400"),
    "sessions/<sid:session_id>/compare/": _REVIEW,
    "sessions/<sid:session_id>/turns/": _REVIEW,
    "sessions/<sid:session_id>/prefer/": ("405",) * 6,  # POST only: see POST_MATRIX
    "sessions/<sid:session_id>/": _REVIEW,
    "datasets/": _REVIEW,  # the listed sessions as a dataset (dashboard/review/datasets.py)
    "insights/": _REVIEW,  # latency and cost over time (dashboard/insights/)
    "insights.json": _REVIEW,
    # The review workflow (dashboard/review/annotate.py): reading needs view; the writes are
    # POST only (see POST_MATRIX), annotating needs view + annotate (only staff holds it here).
    "sessions/<sid:session_id>/annotations/": _REVIEW,
    "sessions/<sid:session_id>/annotations/<int:annotation_id>/": ("405",) * 6,
    "sessions/<sid:session_id>/annotations/<int:annotation_id>/delete/": ("405",) * 6,
    "sessions/<sid:session_id>/annotations/comment/": ("405",) * 6,
    "sessions/<sid:session_id>/annotations/review/": ("405",) * 6,
    "sessions/<sid:session_id>/annotations/score/": ("405",) * 6,
    "sessions/<sid:session_id>/annotations/score/clear/": ("405",) * 6,
    "sessions/<sid:session_id>/annotations/tag/": ("405",) * 6,
    # The queue: its start page takes annotate (staff); "next" (a POST) opens and claims.
    "review/": ("login", "403", "403", "403", "403", "200"),
    "review/next/": ("405",) * 6,
    # The JSON API (dashboard/api): 401 without credentials (JSON, no login redirect), then the
    # pages' permissions; its docs page is a page (login redirect).
    "api/v1/": ("404",) * 6,
    "api/v1/^": ("404",) * 6,
    "api/v1/docs": _REVIEW,
    "api/v1/openapi.json": _API,
    "api/v1/score-definitions/": _API,
    "api/v1/sessions/": _API,
    "api/v1/sessions/<session_id>/": _API,
    "api/v1/sessions/<session_id>/annotations/": _API,
    "api/v1/sessions/<session_id>/branches/<branch_id>/turns/": _API,
    "api/v1/sessions/<session_id>/branches/<branch_id>/turns/<n>/trace/": _API,
    "api/v1/sessions/<session_id>/review/": _API,
    "api/v1/sessions/<session_id>/usage/": _API,
    "api/v1/annotations/<annotation_id>/": ("405",) * 6,  # PATCH / DELETE only
    # Personal API tokens: any viewer manages their own.
    "account/tokens/": _REVIEW,
    # The admin site: staff only.
    "admin/": _ADMIN,
    "admin/login/": ("200", "200", "200", "200", "200", "admin-index"),
    # POST only for staff; everyone else is sent to the admin's index (its login).
    "admin/logout/": ("admin-index",) * 5 + ("405",),
    "admin/password_change/": _ADMIN,
    "admin/password_change/done/": _ADMIN,
    "admin/autocomplete/": ("admin", "admin", "admin", "admin", "admin", "403"),
    "admin/jsi18n/": _ADMIN,
    "admin/r/<path:content_type_id>/<path:object_id>/": (
        "admin",
        "admin",
        "admin",
        "admin",
        "admin",
        "404",  # AgentSession has no get_absolute_url: "view on site" does not apply
    ),
    "admin/^(?P<app_label>auth|conversations)/$": _ADMIN,
    "admin/(?P<url>.*)$": ("admin", "admin", "admin", "admin", "admin", "404"),
}
# Every model admin's routes (filled in below for each registered model).
_MODEL_ROUTES = (
    "",
    "add/",
    "<path:object_id>/history/",
    "<path:object_id>/delete/",
    "<path:object_id>/change/",
    "<path:object_id>/",
)
_ADMIN_MODELS = {
    "auth/group": Group,
    "auth/user": None,  # the user model: the staff user's own row
    "conversations/agentsession": AgentSession,
    "conversations/agentmessage": AgentMessage,
    "conversations/messagestructure": MessageStructure,
    "conversations/turnusage": TurnUsage,
    "conversations/sessioncleargeneration": SessionClearGeneration,
    "conversations/preferredbranch": PreferredBranch,
    "conversations/scoredefinition": ScoreDefinition,
    "conversations/annotation": Annotation,
    "conversations/sessionreview": SessionReview,
    "conversations/auditentry": AuditEntry,
    "conversations/apitoken": ApiToken,
}
for _model in _ADMIN_MODELS:
    for _suffix in _MODEL_ROUTES:
        # "<id>/" alone redirects to "<id>/change/" (Django's compatibility route).
        GET_MATRIX[f"admin/{_model}/{_suffix}"] = (
            ("admin",) * 5 + ("admin-change",) if _suffix == "<path:object_id>/" else _ADMIN
        )
# The admin refuses writes that would break the SDK tables' invariants (rows come from the write
# path): no "add" of SDK rows or preferences, no delete of structure rows or clear generations;
# deleting a message that is not a branch's last item sends the operator back to its page.
_NO_ADMIN_WRITE = ("admin",) * 5 + ("refused",)
for _model in ("agentsession", "agentmessage", "messagestructure", "preferredbranch"):
    GET_MATRIX[f"admin/conversations/{_model}/add/"] = _NO_ADMIN_WRITE
GET_MATRIX["admin/conversations/sessioncleargeneration/add/"] = _NO_ADMIN_WRITE
# The review workflow's admin: annotations and the audit trail are read-only (authors edit
# their own annotations; the trail is a record); a review row is created by setting a status
# on the pages; tokens are revoked, never deleted; a definition in use is archived instead.
for _model in ("annotation", "auditentry", "sessionreview"):
    GET_MATRIX[f"admin/conversations/{_model}/add/"] = _NO_ADMIN_WRITE
for _model in ("annotation", "auditentry", "sessionreview", "apitoken", "scoredefinition"):
    GET_MATRIX[f"admin/conversations/{_model}/<path:object_id>/delete/"] = _NO_ADMIN_WRITE
# ... except that moderators (``conversations.delete_annotation``: staff here, a superuser) may
# delete an annotation (through ``reviews.annotation_delete``, audited).
GET_MATRIX["admin/conversations/annotation/<path:object_id>/delete/"] = _ADMIN
GET_MATRIX["admin/conversations/messagestructure/<path:object_id>/delete/"] = _NO_ADMIN_WRITE
GET_MATRIX["admin/conversations/sessioncleargeneration/<path:object_id>/delete/"] = _NO_ADMIN_WRITE
GET_MATRIX["admin/conversations/agentmessage/<path:object_id>/delete/"] = _NO_ADMIN_WRITE
GET_MATRIX["admin/auth/user/<id>/password/"] = _ADMIN
GET_MATRIX["admin/conversations/agentsession/usage-health/"] = _ADMIN
GET_MATRIX["admin/conversations/agentsession/<path:object_id>/branches/rename/"] = _ADMIN
GET_MATRIX["admin/conversations/agentsession/<path:object_id>/branches/delete/"] = _ADMIN
GET_MATRIX["admin/conversations/agentsession/<path:object_id>/duplicate/"] = _ADMIN

#: Data-changing routes, POSTed (CSRF is off in the test client; these check access only).
POST_MATRIX: dict[str, tuple[str, ...]] = {
    # Marking a branch: view + mark_preferred_branch (only staff holds the latter here).
    "sessions/<sid:session_id>/prefer/": ("login", "403", "403", "403", "403", "303"),
    "chat/new/": ("login", "403", "403", "403", "chat", "chat"),
    # Annotating: view + annotate (only staff holds it here); an empty form is refused (400).
    "sessions/<sid:session_id>/annotations/score/": ("login", "403", "403", "403", "403", "400"),
    "sessions/<sid:session_id>/annotations/comment/": ("login", "403", "403", "403", "403", "400"),
    "sessions/<sid:session_id>/annotations/tag/": ("login", "403", "403", "403", "403", "400"),
    "sessions/<sid:session_id>/annotations/review/": ("login", "403", "403", "403", "403", "400"),
    # Deleting an annotation: its author with annotate, or a moderator (staff is both here;
    # a form body is not the JSON object the route takes: 400).
    "sessions/<sid:session_id>/annotations/<int:annotation_id>/delete/": (
        "login",
        "403",
        "403",
        "403",
        "403",
        "400",
    ),
    # The queue's "next" (opens and claims the next session): annotate.
    "review/next/": ("login", "403", "403", "403", "403", "303"),
}

#: Sockets: "ready"/"open" = accepted and working; a number = the close code.
SOCKET_MATRIX: dict[str, tuple[str, ...]] = {
    "/ws/chat/<id>/": ("4401", "4403", "4403", "4403", "ready", "ready"),
    "/ws/sessions/<id>/": ("4401", "4403", "open", "4403", "open", "open"),
}


# ---- Walking the URLconf -------------------------------------------------------------------


def _routes(patterns=None, prefix: str = "") -> list[str]:
    out = []
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            out += _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            out.append(prefix + str(pattern.pattern))
    return out


def test_every_route_of_the_urlconf_has_a_row():
    routes = _routes()
    assert sorted(set(routes) - set(GET_MATRIX)) == []  # a new route needs its row
    assert sorted(set(GET_MATRIX) - set(routes)) == []  # and a gone one loses it


# ---- Data and users ------------------------------------------------------------------------


@pytest.fixture
def world(db, django_user_model):
    """One session with two branches and usage; one user per role; objects for the admin."""
    writer = Writer(SESSION)
    writer.turn(turn_items(1, tool=True))
    writer.turn(turn_items(2))
    writer.branch(1, "side")
    writer.turn(turn_items(1, text="other"))
    users = {}
    for role in ROLES[1:]:
        user = django_user_model.objects.create_user(username=role)  # no password: no hashing
        if role == "staff":
            user.is_staff = user.is_superuser = True
            user.save()
        codenames = {
            "viewer": ("view_agentsession",),
            "chat_only": ("continue_conversation",),
            "viewer_chat": ("view_agentsession", "continue_conversation"),
        }.get(role, ())
        grant(user, *codenames)
        users[role] = user
    group = Group.objects.create(name="reviewers")
    session = AgentSession.objects.get(session_id=SESSION)
    PreferredBranch.objects.get_or_create(session_id=SESSION, defaults={"branch_id": "side"})
    definition = ScoreDefinition.objects.create(name="helpful", kind="boolean")
    score = reviews.score_set(
        user=users["staff"],
        target=reviews.Target(SESSION, "main", 1),
        definition=definition,
        value=1,
    )
    review = reviews.review_status_set(user=users["staff"], session_id=SESSION, status="in_review")
    token, _raw = reviews.token_create(user=users["staff"], name="matrix")
    ids = {
        "auth/group": group.pk,
        "auth/user": users["staff"].pk,
        "conversations/agentsession": session.pk,
        "conversations/agentmessage": AgentMessage.objects.filter(session_id=SESSION)
        .order_by("id")
        .first()
        .pk,
        "conversations/messagestructure": MessageStructure.objects.filter(session_id=SESSION)
        .order_by("id")
        .first()
        .pk,
        "conversations/turnusage": TurnUsage.objects.filter(session_id=SESSION).first().pk,
        "conversations/sessioncleargeneration": _clear_generation_pk(),
        "conversations/preferredbranch": PreferredBranch.objects.get(session_id=SESSION).pk,
        "conversations/scoredefinition": definition.pk,
        "conversations/annotation": score.pk,
        "conversations/sessionreview": review.pk,
        "conversations/auditentry": AuditEntry.objects.first().pk,
        "conversations/apitoken": token.pk,
        "annotation": score.pk,
    }
    return {"users": users, "ids": ids, "content_type": ContentType.objects.get_for_model(session)}


def _clear_generation_pk():
    row = SessionClearGeneration.objects.first()
    return row.pk if row is not None else 1


def _url(route: str, world) -> str:
    """A concrete path for ``route`` (its parameters filled with existing objects)."""
    session = quote(SESSION, safe="")
    fixed = {
        "admin/r/<path:content_type_id>/<path:object_id>/": (
            f"/admin/r/{world['content_type'].pk}/{world['ids']['conversations/agentsession']}/"
        ),
        "admin/^(?P<app_label>auth|conversations)/$": "/admin/conversations/",
        "admin/(?P<url>.*)$": "/admin/no-such-page/",
        "admin/auth/user/<id>/password/": (
            f"/admin/auth/user/{world['users']['staff'].pk}/password/"
        ),
    }
    if route in fixed:
        return fixed[route]
    path = "/" + route.replace("<sid:session_id>", session).replace("<path:session_id>", session)
    path = path.replace("<str:fmt>", "json").replace("<session_id>", session)
    path = path.replace("<branch_id>", "side")
    path = path.replace("<n>", "1")
    path = path.replace("<int:annotation_id>", str(world["ids"]["annotation"]))
    path = path.replace("<annotation_id>", str(world["ids"]["annotation"]))
    if route == "api/v1/^":
        path = "/api/v1/no-such-endpoint/"
    if "<path:object_id>" in path:
        model = "/".join(route.split("/")[1:3])
        path = path.replace("<path:object_id>", str(world["ids"][model]))
    assert "<" not in path, route
    return path


def _outcome(response) -> str:
    if response.status_code in (301, 302):
        location = response["Location"]
        if location.startswith("/accounts/login/"):
            return "login"
        if location.startswith("/admin/login/"):
            return "admin"
        if location == "/":
            return "home"
        if location == "/admin/":
            return "admin-index"
        if location.endswith("/change/"):
            return "admin-change"
        if location.startswith("/sessions/chat-") and "/chat/" in location:
            return "chat"
        return f"{response.status_code} {location}"
    return str(response.status_code)


_ALIASES = {"refused": {"403", "admin-change"}}


def _matches(got: dict[str, str], expected: tuple[str, ...]) -> bool:
    return all(
        got[role] in _ALIASES.get(want, {want}) for role, want in zip(ROLES, expected, strict=True)
    )


def _client(client, world, role: str):
    client.logout()
    if role != "anonymous":
        client.force_login(world["users"][role])
    return client


@pytest.mark.parametrize("route", sorted(GET_MATRIX))
def test_get_matrix(client, world, route):
    got = {}
    for role in ROLES:
        response = _client(client, world, role).get(_url(route, world))
        got[role] = _outcome(response)
    assert _matches(got, GET_MATRIX[route]), (got, GET_MATRIX[route])


@pytest.mark.parametrize("route", sorted(POST_MATRIX))
def test_post_matrix(client, world, route):
    got = {}
    for role in ROLES:
        data = {"branch": "side"} if route.endswith("prefer/") else {}
        response = _client(client, world, role).post(_url(route, world), data)
        got[role] = _outcome(response)
    assert got == dict(zip(ROLES, POST_MATRIX[route], strict=True))


# ---- Sockets -------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def _drained():
    yield
    await asyncio.gather(*consumers._RUNNING_TURNS)
    await sync_to_async(connections.close_all)()


async def _socket_outcome(path: str, cookie: str | None) -> str:
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected  # refusals accept, then close with a code
    try:
        if await communicator.receive_nothing(timeout=0.3):
            return "open"
        output = await communicator.receive_output(timeout=10)
        if output["type"] == "websocket.close":
            return str(output["code"])
        message = json.loads(output["text"]) if "text" in output else output
        return str(message.get("type"))
    finally:
        await communicator.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("socket", sorted(SOCKET_MATRIX))
async def test_socket_matrix(world, socket, _drained):
    path = socket.replace("<id>", quote(SESSION, safe=""))
    got = {}
    for role in ROLES:
        cookie = None
        if role != "anonymous":
            cookie = await sync_to_async(cookie_header)(world["users"][role])
        got[role] = await _socket_outcome(path, cookie)
    assert got == dict(zip(ROLES, SOCKET_MATRIX[socket], strict=True))
