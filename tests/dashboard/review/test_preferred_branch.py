"""The preferred branch: reviewers mark the path a session should open on."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from conversations import services
from conversations.models import PreferredBranch
from dashboard.links import session_url
from tests.conftest import grant
from tests.support.builders import trip_session

pytestmark = pytest.mark.django_db

SID = "demo/trip café"


@pytest.fixture
def trip():
    return trip_session(SID)


@pytest.fixture
def marker(reviewer):
    return grant(reviewer, "mark_preferred_branch")


@pytest.fixture
def marker_client(client, marker):
    client.force_login(marker)
    return client


def prefer_url(session_id: str = SID) -> str:
    return reverse("session_prefer", kwargs={"session_id": session_id})


def current_branch(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.context["detail"].branch.branch_id


def test_mark_opens_the_session_on_that_branch(marker_client, marker, trip):
    assert current_branch(marker_client, session_url(SID)) == "main"
    response = marker_client.post(prefer_url(), {"branch": "tokyo/nikko"})
    assert response.status_code == 303
    assert response["Location"] == session_url(SID, "tokyo/nikko")
    assert current_branch(marker_client, session_url(SID)) == "tokyo/nikko"
    # An explicit branch still wins, main included.
    assert current_branch(marker_client, session_url(SID, "main")) == "main"
    assert current_branch(marker_client, session_url(SID, "tokyo")) == "tokyo"
    preference = PreferredBranch.objects.get(session_id=SID)
    assert (preference.branch_id, preference.marked_by) == ("tokyo/nikko", marker)


def test_page_shows_the_mark_and_the_toggle(marker_client, trip):
    html = marker_client.get(session_url(SID, "tokyo")).content.decode()
    assert "☆ Mark as preferred" in html and 'id="preferred-badge"' not in html
    marker_client.post(prefer_url(), {"branch": "tokyo"})
    html = marker_client.get(session_url(SID)).content.decode()
    assert 'id="preferred-badge"' in html and "Unmark preferred" in html
    assert html.count('class="preferred-star"') == 2  # the tree and the branch list
    # Other branches' pages show the star on tokyo but offer to mark themselves.
    html = marker_client.get(session_url(SID, "main")).content.decode()
    assert 'id="preferred-badge"' not in html and "☆ Mark as preferred" in html
    # Links to main are explicit, so they do not land on the preferred branch.
    assert 'href="/sessions/demo/trip%20caf%C3%A9/?branch=main"' in html


def test_clear_goes_back_to_main(marker_client, trip):
    marker_client.post(prefer_url(), {"branch": "tokyo"})
    response = marker_client.post(prefer_url(), {"branch": "tokyo", "clear": "1"})
    assert response.status_code == 303
    assert response["Location"] == session_url(SID, "tokyo")
    assert not PreferredBranch.objects.filter(session_id=SID).exists()
    assert current_branch(marker_client, session_url(SID)) == "main"


@pytest.mark.parametrize(
    ("session_id", "data", "status"),
    [
        (SID, {"branch": "no-such-branch"}, 404),
        ("no-such-session", {"branch": "main"}, 404),
        (SID, {}, 400),
    ],
)
def test_bad_marks_are_refused_and_change_nothing(marker_client, trip, session_id, data, status):
    marker_client.post(prefer_url(), {"branch": "tokyo"})
    assert marker_client.post(prefer_url(session_id), data).status_code == status
    assert PreferredBranch.objects.get(session_id=SID).branch_id == "tokyo"


def test_access(django_user_model, marker, trip):
    url = prefer_url()
    response = Client().post(url, {"branch": "tokyo"})  # anonymous
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    viewer = django_user_model.objects.create_user(username="viewer", password="view-pass-1")
    grant(viewer, "view_agentsession")
    view_only = Client()
    view_only.force_login(viewer)
    assert view_only.post(url, {"branch": "tokyo"}).status_code == 403
    assert 'id="prefer-form"' not in view_only.get(session_url(SID)).content.decode()
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(marker)
    assert csrf_client.post(url, {"branch": "tokyo"}).status_code == 403  # no CSRF token
    assert csrf_client.get(url).status_code == 405
    assert not PreferredBranch.objects.exists()


def test_a_vanished_preferred_branch_is_ignored(marker_client, trip):
    marker_client.post(prefer_url(), {"branch": "tokyo/nikko"})
    # Deleted behind Forkview's back (the SDK's delete_branch knows nothing of the mark).
    from conversations.models import MessageStructure, TurnUsage

    MessageStructure.objects.filter(session_id=SID, branch_id="tokyo/nikko").delete()
    TurnUsage.objects.filter(session_id=SID, branch_id="tokyo/nikko").delete()
    assert current_branch(marker_client, session_url(SID)) == "main"
    html = marker_client.get(session_url(SID)).content.decode()
    assert 'class="preferred-star"' not in html


def test_services_keep_the_mark_with_the_branch(trip):
    services.branch_prefer(session_id=SID, branch_id="tokyo")
    services.branch_rename(session_id=SID, old="tokyo", new="tokyo-trip")
    assert PreferredBranch.objects.get(session_id=SID).branch_id == "tokyo-trip"
    services.session_duplicate(session_id=SID, new_session_id="copy")
    assert PreferredBranch.objects.get(session_id="copy").branch_id == "tokyo-trip"
    services.branch_delete(session_id=SID, branch_id="tokyo-trip")
    assert not PreferredBranch.objects.filter(session_id=SID).exists()
    services.session_delete(session_id="copy")
    assert not PreferredBranch.objects.exists()
    with pytest.raises(services.ServiceError, match="does not exist"):
        services.branch_prefer(session_id=SID, branch_id="tokyo-trip")


def test_admin_lists_marks_read_only(admin_client, trip):
    services.branch_prefer(session_id=SID, branch_id="tokyo")
    changelist = reverse("admin:conversations_preferredbranch_changelist")
    html = admin_client.get(changelist).content.decode()
    assert "tokyo" in html and SID in html
    assert reverse("admin:conversations_preferredbranch_add") not in html
    assert admin_client.get(reverse("admin:conversations_preferredbranch_add")).status_code == 403
