"""Every review page needs login, and browsing needs ``conversations.view_agentsession``."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import reverse

from tests.support.builders import Writer, turn_items

pytestmark = pytest.mark.django_db

PAGES = [
    ("home", {}),
    ("session_detail", {"session_id": "s1"}),
    ("session_usage", {"session_id": "s1"}),
    ("session_compare", {"session_id": "s1"}),
    ("session_turns", {"session_id": "s1"}),
]


@pytest.fixture
def one_session():
    Writer("s1").turn(turn_items(1))


@pytest.mark.parametrize(("name", "kwargs"), PAGES)
def test_page_anonymous_redirects_to_login(client, one_session, name, kwargs):
    url = reverse(name, kwargs=kwargs)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


@pytest.mark.parametrize(("name", "kwargs"), PAGES)
def test_page_without_permission_is_403(client, django_user_model, one_session, name, kwargs):
    client.force_login(django_user_model.objects.create_user("nobody", password="x-pass-123"))
    response = client.get(reverse(name, kwargs=kwargs))
    assert response.status_code == 403


def test_403_page_is_friendly(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("nobody", password="x-pass-123"))
    response = client.get(reverse("home"))
    assert b"have access" in response.content and b"Traceback" not in response.content


def test_login_page_renders_in_app_look(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b'id="login-submit"' in response.content and b"forkview.css" in response.content


def test_login_then_home(client, reviewer):
    response = client.post(
        reverse("login"), {"username": "reviewer", "password": "review-pass-1"}, follow=True
    )
    assert response.redirect_chain[-1][0] == reverse("home")
    assert b"session-table" in response.content


def test_logout_needs_post_and_logs_out(reviewer_client):
    response = reviewer_client.post(reverse("logout"))
    assert response.status_code == 302
    assert reviewer_client.get(reverse("home")).status_code == 302


@override_settings(DEBUG=False)
def test_unknown_session_is_friendly_404(reviewer_client):
    response = reviewer_client.get(reverse("session_detail", kwargs={"session_id": "nope"}))
    assert response.status_code == 404
    assert b"Not found" in response.content and b"Traceback" not in response.content


def test_unknown_branch_is_404(reviewer_client, one_session):
    url = reverse("session_detail", kwargs={"session_id": "s1"})
    assert reviewer_client.get(url, {"branch": "ghost"}).status_code == 404


def test_500_template_is_standalone():
    from django.template.loader import render_to_string

    assert "Something went wrong" in render_to_string("500.html")
