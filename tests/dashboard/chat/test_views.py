"""The chat pages (``session_chat``, ``chat_new``) and the review page's chat hooks."""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from conversations.permissions import APP_LABEL, CHAT_CODENAME, VIEW_CODENAME
from tests.support.builders import Writer, turn_items

pytestmark = pytest.mark.django_db


def _user(django_user_model, name: str, *codenames: str):
    user = django_user_model.objects.create_user(username=name, password="pw-123456789")
    for codename in codenames:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=APP_LABEL, codename=codename)
        )
    return user


@pytest.fixture
def chat_client(client, django_user_model):
    client.force_login(_user(django_user_model, "chatter", CHAT_CODENAME, VIEW_CODENAME))
    return client


def test_url_names():
    assert reverse("chat_new") == "/chat/new/"
    assert reverse("session_chat", kwargs={"session_id": "a/b c"}) == "/sessions/a/b%20c/chat/"


def test_chat_pages_need_login_and_the_chat_permission(client, django_user_model):
    chat = reverse("session_chat", kwargs={"session_id": "s"})
    for url in (chat, reverse("chat_new")):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("login"))
    client.force_login(_user(django_user_model, "viewer", VIEW_CODENAME))
    assert client.get(chat).status_code == 403
    assert client.get(reverse("chat_new")).status_code == 403


def test_new_conversation_redirects_to_a_fresh_chat(chat_client):
    first = chat_client.get(reverse("chat_new"))
    second = chat_client.get(reverse("chat_new"))
    assert first.status_code == second.status_code == 302
    assert first.url != second.url
    path = urlsplit(first.url)
    assert path.path.startswith("/sessions/chat-") and path.path.endswith("/chat/")
    assert parse_qs(path.query) == {"branch": ["main"]}
    page = chat_client.get(first.url)
    assert page.status_code == 200
    assert b"A new conversation" in page.content
    assert b"offline demo model" in page.content


def test_chat_page_renders_the_branch_history_with_the_review_partials(chat_client):
    writer = Writer("team/q3 plan")
    writer.turn(turn_items(1, text="first question"))
    writer.turn(turn_items(2, text="second <b>question</b>", tool=True))
    url = reverse("session_chat", kwargs={"session_id": "team/q3 plan"}) + "?branch=main"
    response = chat_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="turn') >= 2 and 'data-turn="2"' in html
    assert "second &lt;b&gt;question&lt;/b&gt;" in html  # escaped
    assert f'data-ws-path="/ws/chat/{quote("team/q3 plan", safe="")}/"' in html
    assert 'data-branch="main"' in html
    assert 'id="backend-label"' in html and "offline demo model" in html
    assert "csrfmiddlewaretoken" in html
    assert "dashboard/js/chat.js" in html


def test_unknown_branch_of_an_existing_session_starts_empty(chat_client):
    Writer("s1").turn(turn_items(1))
    response = chat_client.get(reverse("session_chat", kwargs={"session_id": "s1"}) + "?branch=new")
    assert response.status_code == 200
    assert b"has no turns yet" in response.content


def test_review_page_links_to_the_chat_and_loads_live_updates(chat_client):
    Writer("s2").turn(turn_items(1))
    response = chat_client.get(reverse("session_detail", kwargs={"session_id": "s2"}))
    html = response.content.decode()
    assert 'id="continue-branch"' in html
    assert reverse("session_chat", kwargs={"session_id": "s2"}) + "?branch=main" in html
    assert 'id="live-updates"' in html and 'data-ws-path="/ws/sessions/s2/"' in html
    assert "dashboard/js/live.js" in html


def test_review_page_hides_continue_without_the_chat_permission(client, django_user_model):
    Writer("s3").turn(turn_items(1))
    client.force_login(_user(django_user_model, "viewer", VIEW_CODENAME))
    html = client.get(reverse("session_detail", kwargs={"session_id": "s3"})).content.decode()
    assert 'id="continue-branch"' not in html
    assert 'class="fork-link"' not in html
    assert 'id="live-updates"' in html  # viewers still get live updates


def test_every_review_turn_links_to_fork_from_it_in_the_chat(chat_client):
    writer = Writer("team/q3 plan")
    for n in (1, 2, 3):
        writer.turn(turn_items(n))
    chat = reverse("session_chat", kwargs={"session_id": "team/q3 plan"})
    html = chat_client.get(
        reverse("session_detail", kwargs={"session_id": "team/q3 plan"})
    ).content.decode()
    for n in (1, 2, 3):
        assert f'class="fork-link" href="{chat}?branch=main&amp;fork={n}"' in html
    # The "load earlier" fragment carries the links too.
    fragment = chat_client.get(
        reverse("session_turns", kwargs={"session_id": "team/q3 plan"}),
        {"branch": "main", "start": 1, "end": 2},
    ).content.decode()
    assert f"{chat}?branch=main&amp;fork=1" in fragment and "fork=3" not in fragment


@pytest.mark.parametrize(("fork", "expected"), [("2", 2), ("9", None), ("x", None), ("-1", None)])
def test_chat_page_opens_the_requested_turn_for_editing(chat_client, fork, expected):
    writer = Writer("s4")
    for n in (1, 2, 3):
        writer.turn(turn_items(n))
    url = reverse("session_chat", kwargs={"session_id": "s4"})
    html = chat_client.get(url, {"branch": "main", "fork": fork}).content.decode()
    if expected is None:
        assert "data-fork-turn" not in html
    else:
        assert f'data-fork-turn="{expected}"' in html and f'data-turn="{expected}"' in html


def test_fork_window_includes_an_old_turn_of_a_long_branch(chat_client):
    writer = Writer("long")
    for n in range(1, 41):
        writer.turn(turn_items(n))
    url = reverse("session_chat", kwargs={"session_id": "long"})
    html = chat_client.get(url, {"branch": "main", "fork": "3"}).content.decode()
    assert 'data-fork-turn="3"' in html and 'data-turn="3"' in html


def test_chat_page_runs_a_constant_number_of_queries(chat_client):
    """With each turn's trace line (issue 16) the page still costs the same at any size."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from conversations.models import AgentSpan, AgentTrace

    def page_queries(session_id: str, turns: int) -> int:
        writer = Writer(session_id)
        for n in range(1, turns + 1):
            writer.turn(turn_items(n, text=f"question {n}", tool=True))
            AgentTrace.objects.create(
                trace_id=f"trace_{session_id}_{n}",
                session_id=session_id,
                branch_id="main",
                turn=n,
                metadata={"forkview_ttft_ms": "120"},
            )
            AgentSpan.objects.create(
                span_id=f"span_{session_id}_{n}",
                trace_id=f"trace_{session_id}_{n}",
                kind="response",
                model="forkview-offline-demo",
                input_tokens=10,
                output_tokens=5,
            )
        url = reverse("session_chat", kwargs={"session_id": session_id})
        chat_client.get(url)  # warm (session, permissions)
        with CaptureQueriesContext(connection) as ctx:
            response = chat_client.get(url)
        assert response.status_code == 200
        assert response.content.decode().count('class="trace-line"') == min(turns, 20)
        return len(ctx.captured_queries)

    assert page_queries("small", 2) == page_queries("large", 25)
