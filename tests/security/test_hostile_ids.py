"""Every session and branch id opens its own pages, from the list, the search and the tree
(issue 12, hole 3): newlines, control characters, slashes, ``%``, ``?``, ``#`` and ids ending
in a route's suffix (``tests.support.hostile.HOSTILE_IDS``)."""

from __future__ import annotations

import html
import re
from urllib.parse import unquote, urlsplit

import pytest
from django.urls import resolve

from dashboard.links import chat_url, compare_url, export_url, session_url, turns_url, usage_url
from tests.support.builders import Writer, turn_items
from tests.support.hostile import HOSTILE_IDS

pytestmark = pytest.mark.django_db

VIEWS = {
    "session_detail": session_url,
    "session_compare": lambda sid: compare_url(sid, "main", "main"),
    "session_usage": lambda sid: usage_url(sid, "main"),
    "session_turns": lambda sid: turns_url(sid, "main", start=1, end=1),
    "session_chat": chat_url,
    "session_export": lambda sid: export_url(sid, "json"),
}


@pytest.mark.parametrize("session_id", HOSTILE_IDS)
@pytest.mark.parametrize("name", VIEWS)
def test_every_link_resolves_to_its_own_view_and_id(session_id, name):
    url = VIEWS[name](session_id)
    match = resolve(unquote(urlsplit(url).path))
    assert (match.url_name, match.kwargs["session_id"]) == (name, session_id)


def test_ordinary_ids_keep_their_paths():
    assert session_url("plain") == "/sessions/plain/"
    assert session_url("demo/trip café") == "/sessions/demo/trip%20caf%C3%A9/"


def _links(body: str) -> set[str]:
    return {html.unescape(h) for h in re.findall(r'href="(/sessions/[^"]*)"', body)}


@pytest.fixture
def hostile_sessions():
    for n, sid in enumerate(HOSTILE_IDS):
        w = Writer(sid)
        w.turn(turn_items(1, text=f"needle {n}"))
        w.turn(turn_items(2, text=f"needle {n}"))
        w.branch(2, sid)  # the same hostile text as a branch id
        w.turn(turn_items(2, text=f"needle {n} again"))


def test_list_search_and_tree_open_their_own_pages(reviewer_client, hostile_sessions):
    for page in ("/", "/?q=needle"):
        response = reviewer_client.get(page)
        assert response.status_code == 200
        links = _links(response.content.decode())
        for sid in HOSTILE_IDS:
            assert any(
                resolve(unquote(urlsplit(link).path)).kwargs.get("session_id") == sid
                for link in links
            ), (page, sid)
    for sid in HOSTILE_IDS:
        response = reviewer_client.get(session_url(sid, sid))
        assert response.status_code == 200, sid
        assert response.context["detail"].branch.branch_id == sid
        for link in _links(response.content.decode()):
            path = unquote(urlsplit(link).path)
            assert resolve(path).kwargs["session_id"] == sid, (sid, link)
            assert reviewer_client.get(link).status_code == 200, (sid, link)
