"""The session admin through the test client: its pages, links, actions and permissions."""

from __future__ import annotations

import json

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.admin.utils import quote
from django.contrib.auth.models import User
from django.urls import reverse

from conversations import services
from conversations.admin import MessageInline
from conversations.models import (
    AgentMessage,
    AgentSession,
    BranchReservation,
    MessageStructure,
    TurnUsage,
)
from tests.conversations.admin.pages import change_url, edit, message, staff_with
from tests.support.sdk_harness import assistant, user
from tests.support.trees import call, tree_session

pytestmark = pytest.mark.django_db


# ---- pages render ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "admin:conversations_agentsession_changelist",
        "admin:conversations_agentmessage_changelist",
        "admin:conversations_messagestructure_changelist",
        "admin:conversations_turnusage_changelist",
        "admin:conversations_sessioncleargeneration_changelist",
        "admin:conversations_usage_health",
    ],
)
def test_changelists_render(admin, url):
    tree_session()
    assert admin.get(reverse(url)).status_code == 200


@pytest.mark.parametrize(
    ("url", "query"),
    [
        ("admin:conversations_agentmessage_changelist", "q=Paris"),
        ("admin:conversations_agentmessage_changelist", "structure__branch_id=alt"),
        ("admin:conversations_agentmessage_changelist", "structure__message_type=function_call"),
        ("admin:conversations_agentmessage_changelist", "structure__tool_name=get_weather"),
        ("admin:conversations_agentsession_changelist", "q=s1"),
        ("admin:conversations_agentsession_changelist", "q=Lyon"),
        ("admin:conversations_agentsession_changelist", "structure__branch_id=alt"),
        (
            "admin:conversations_messagestructure_changelist",
            "session__session_id__exact=s1&branch_id=alt&user_turn_number=2",
        ),
        ("admin:conversations_turnusage_changelist", "session__session_id__exact=s1&branch_id=alt"),
    ],
)
def test_filters_and_search(admin, url, query):
    tree_session()
    tree_session("other")
    response = admin.get(f"{reverse(url)}?{query}")
    assert response.status_code == 200
    assert "?e=1" not in response.url if hasattr(response, "url") else True
    assert response.context["cl"].result_count >= 1


def test_session_page_shows_branches_reservations_and_messages(admin):
    tree_session()
    html = admin.get(change_url("agentsession", "s1")).content.decode()
    assert "forkview-branches" in html and ">alt<" in html and ">main<" in html
    assert "alt, main" in html  # reserved ids, read-only
    assert "What about Lyon?" in html  # message inline
    assert reverse("admin:conversations_branch_rename", args=["s1"]) in html
    assert reverse("session_export", args=["s1", "json"]) in html


def test_session_page_is_read_only_without_save_buttons(admin):
    tree_session()
    response = admin.get(change_url("agentsession", "s1"))
    html = response.content.decode()
    assert response.context["title"] == "View agent session"
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    assert "closelink" in html  # Close instead
    assert reverse("admin:conversations_agentsession_delete", args=["s1"]) in html


def test_session_page_lists_messages_readably(admin):
    tree_session()
    html = admin.get(change_url("agentsession", "s1")).content.decode()
    # An assistant message's content is a list of output_text parts: its text is shown.
    assert "Sunny in Paris." in html and "output_text" not in html
    # No per-row caption (the message's __str__) above each row.
    for pk in AgentMessage.objects.filter(session_id="s1").values_list("pk", flat=True):
        assert f"message {pk} of s1" not in html
        assert change_url("agentmessage", pk) in html


def test_session_page_shows_the_first_messages_and_links_to_all(admin, monkeypatch):
    tree_session()
    monkeypatch.setattr(MessageInline, "max_shown", 3)
    html = admin.get(change_url("agentsession", "s1")).content.decode()
    first = list(
        AgentMessage.objects.filter(session_id="s1").order_by("id").values_list("pk", flat=True)
    )
    assert [change_url("agentmessage", pk) in html for pk in first] == [True] * 3 + [False] * (
        len(first) - 3
    )
    assert f"Showing the first 3 of {len(first)} messages" in html
    url = reverse("admin:conversations_agentmessage_changelist")
    assert f"{url}?session__session_id__exact=s1" in html


def test_session_changelist_counts_without_joining_rows(admin):
    tree_session()
    tree_session("other")
    response = admin.get(reverse("admin:conversations_agentsession_changelist") + "?q=Lyon")
    cl = response.context["cl"]
    counts = {s.pk: (s.message_count, s.branch_count) for s in cl.result_list}
    assert counts == {
        sid: (AgentMessage.objects.filter(session_id=sid).count(), 2) for sid in ("s1", "other")
    }
    # Correlated subqueries: joining messages and structure rows multiplies them.
    query = str(cl.model_admin.get_queryset(response.wsgi_request).query)
    assert "JOIN" not in query


def test_main_branch_offers_no_rename_or_delete(admin):
    tree_session()
    html = admin.get(change_url("agentsession", "s1")).content.decode()
    rename = reverse("admin:conversations_branch_rename", args=["s1"])
    assert f"{rename}?branch=alt" in html and f"{rename}?branch=main" not in html
    response = admin.get(rename + "?branch=main")
    assert services.MAIN_RENAME_ERROR.replace("'", "&#x27;") in response.content.decode()
    assert "form" not in response.context or "id_new" not in response.content.decode()
    delete = reverse("admin:conversations_branch_delete", args=["s1"])
    html = admin.get(delete + "?branch=main").content.decode()
    assert services.MAIN_DELETE_ERROR.replace("'", "&#x27;") in html
    assert "Yes, delete the branch" not in html


def test_links_carry_ids_with_slashes_and_spaces(admin):
    session = tree_session("team/42 café")
    call(session, "create_branch_from_turn", 2, "tokyo/nikko day")
    html = admin.get(change_url("agentsession", "team/42 café")).content.decode()
    messages = reverse("admin:conversations_agentmessage_changelist")
    assert f"{messages}?session__session_id__exact=team%2F42+caf%C3%A9" in html
    rename = reverse("admin:conversations_branch_rename", args=[quote("team/42 café")])
    link = f"{rename}?branch=tokyo%2Fnikko+day"
    assert link in html
    response = admin.get(link)
    assert response.context["error"] is None and 'name="new"' in response.content.decode()
    response = admin.get(f"{messages}?session__session_id__exact=team%2F42+caf%C3%A9")
    assert (
        response.context["cl"].result_count
        == AgentMessage.objects.filter(session_id="team/42 café").count()
    )
    structure = reverse("admin:conversations_messagestructure_changelist")
    query = "session__session_id__exact=team%2F42+caf%C3%A9&branch_id=tokyo%2Fnikko+day"
    response = admin.get(f"{structure}?{query}")
    assert (
        response.context["cl"].result_count
        == MessageStructure.objects.filter(
            session_id="team/42 café", branch_id="tokyo/nikko day"
        ).count()
    )


def test_usage_health_action_keeps_ids_with_slashes(admin):
    tree_session("team/42")
    changelist = reverse("admin:conversations_agentsession_changelist")
    response = admin.post(
        changelist, {"action": "usage_health_report", "_selected_action": ["team/42"]}, follow=True
    )
    assert response.context["session_ids"] == ["team/42"]
    assert response.context["unknown_ids"] == []
    assert "Turns without usage (1)" in response.content.decode()  # alt's copied turn 1


def test_usage_health_says_when_a_session_does_not_exist(admin):
    url = reverse("admin:conversations_usage_health")
    html = admin.get(url + "?session=nope").content.decode()
    assert "No session with the id nope." in html


def test_session_filter_shows_and_clears_the_chosen_session(admin):
    tree_session()
    tree_session("other")
    url = reverse("admin:conversations_turnusage_changelist")
    response = admin.get(url + "?session__session_id__exact=s1")
    cl = response.context["cl"]
    assert cl.has_active_filters
    assert {u.session_id for u in cl.result_list} == {"s1"}
    assert "By session" in response.content.decode()
    assert "By session" not in admin.get(url).content.decode()


def test_session_delete_confirmation_counts_its_rows(admin):
    tree_session()
    response = admin.get(reverse("admin:conversations_agentsession_delete", args=["s1"]))
    html = response.content.decode()
    assert "clear_session" in html
    count = AgentMessage.objects.filter(session_id="s1").count()
    assert f"Agent messages: {count}" in html
    assert f"Turn usage: {TurnUsage.objects.filter(session_id='s1').count()}" in html


def test_admin_is_branded(admin):
    assert "Forkview administration" in admin.get(reverse("admin:index")).content.decode()


def test_session_with_slash_in_id(admin):
    tree_session("team/42")
    response = admin.get(change_url("agentsession", "team/42"))
    assert response.status_code == 200
    rename = reverse("admin:conversations_branch_rename", args=[quote("team/42")])
    response = admin.post(rename + "?branch=alt", {"old": "alt", "new": "renamed"})
    assert response.status_code == 302
    assert MessageStructure.objects.filter(session_id="team/42", branch_id="renamed").exists()


# ---- deletes ---------------------------------------------------------------------------


def test_session_delete_is_a_clear_that_keeps_reservations(admin):
    tree_session()
    url = reverse("admin:conversations_agentsession_delete", args=["s1"])
    assert admin.post(url, {"post": "yes"}).status_code == 302
    assert not AgentMessage.objects.filter(session_id="s1").exists()
    assert BranchReservation.objects.filter(session_id="s1", branch_id="alt").exists()


# ---- branch and session actions --------------------------------------------------------


def test_branch_rename_view(admin):
    tree_session()
    url = reverse("admin:conversations_branch_rename", args=["s1"])
    assert admin.get(url + "?branch=alt").status_code == 200
    html = admin.post(url, {"old": "alt", "new": "main"}).content.decode()
    assert "has already been used" in html
    response = admin.post(url, {"old": "alt", "new": "lyon"})
    assert response.status_code == 302
    assert set(MessageStructure.objects.values_list("branch_id", flat=True)) == {"main", "lyon"}
    entry = LogEntry.objects.get(object_id="s1")
    assert entry.get_change_message().startswith("Renamed branch 'alt' to 'lyon'")


def test_branch_delete_view(admin):
    tree_session()
    url = reverse("admin:conversations_branch_delete", args=["s1"])
    html = admin.get(url + "?branch=alt").content.decode()
    assert "Yes, delete the branch" in html
    assert admin.post(url, {"branch": "alt"}).status_code == 302
    assert not MessageStructure.objects.filter(branch_id="alt").exists()
    assert not TurnUsage.objects.filter(branch_id="alt").exists()
    assert "Deleted branch 'alt'" in LogEntry.objects.get(object_id="s1").get_change_message()
    html = admin.post(url, {"branch": "main"}).content.decode()
    assert services.MAIN_DELETE_ERROR.replace("'", "&#x27;") in html


def test_duplicate_action_and_view(admin):
    tree_session()
    changelist = reverse("admin:conversations_agentsession_changelist")
    response = admin.post(changelist, {"action": "duplicate_session", "_selected_action": ["s1"]})
    assert response.status_code == 302
    form_url = response.url
    assert "s1-copy" in admin.get(form_url).content.decode()
    assert admin.post(form_url, {"new_session_id": "s1"}).status_code == 200
    assert admin.post(form_url, {"new_session_id": "s1-copy"}).status_code == 302
    assert MessageStructure.objects.filter(session_id="s1-copy").count() == (
        MessageStructure.objects.filter(session_id="s1").count()
    )
    assert LogEntry.objects.filter(object_id="s1-copy").exists()


def test_rebuild_structure_action(admin):
    AgentSession.objects.create(session_id="plain")
    for item in [user("a"), assistant("b"), user("c")]:
        AgentMessage.objects.create(session_id="plain", message_data=item)
    changelist = reverse("admin:conversations_agentsession_changelist")
    response = admin.post(
        changelist, {"action": "rebuild_structure", "_selected_action": ["plain"]}, follow=True
    )
    assert "Built 3 structure row(s)" in response.content.decode()
    assert list(
        MessageStructure.objects.order_by("sequence_number").values_list(
            "user_turn_number", flat=True
        )
    ) == [1, 1, 2]
    assert (
        "Built 3 structure row(s)" in LogEntry.objects.get(object_id="plain").get_change_message()
    )


def test_usage_health_view(admin):
    tree_session()
    TurnUsage.objects.create(session_id="s1", branch_id="alt", user_turn_number=7, requests=1)
    changelist = reverse("admin:conversations_agentsession_changelist")
    response = admin.post(
        changelist, {"action": "usage_health_report", "_selected_action": ["s1"]}, follow=True
    )
    html = response.content.decode()
    assert "Usage without a turn (1)" in html
    assert "Turns without usage (1)" in html and "copied turn: its usage is on main" in html


# ---- permissions -----------------------------------------------------------------------


def test_anonymous_and_non_staff_cannot_reach_the_admin(client):
    tree_session()
    url = change_url("agentsession", "s1")
    assert client.get(url).status_code == 302
    client.force_login(User.objects.create_user("plain", password="pw"))
    assert client.get(url).status_code == 302  # to the admin login


def test_staff_without_model_permissions_gets_nothing(client):
    tree_session()
    staff_with(client)
    assert client.get(change_url("agentsession", "s1")).status_code == 403
    assert client.get(reverse("admin:conversations_branch_rename", args=["s1"])).status_code == 403
    assert client.get(reverse("admin:conversations_usage_health")).status_code == 403


def test_view_only_staff_cannot_edit_or_run_actions(client):
    tree_session()
    staff_with(client, "view_agentsession", "view_agentmessage")
    assert client.get(change_url("agentsession", "s1")).status_code == 200
    msg = message(message_data__content="Thanks")
    assert edit(client, msg, json.dumps(user("changed"))).status_code == 403
    url = reverse("admin:conversations_branch_rename", args=["s1"])
    assert client.post(url, {"old": "alt", "new": "x"}).status_code == 403
    url = reverse("admin:conversations_branch_delete", args=["s1"])
    assert client.post(url, {"branch": "alt"}).status_code == 403
    url = reverse("admin:conversations_session_duplicate", args=["s1"])
    assert client.post(url, {"new_session_id": "x"}).status_code == 403
    changelist = reverse("admin:conversations_agentsession_changelist")
    assert client.get(changelist).context["action_form"] is None  # no action is allowed
    assert MessageStructure.objects.filter(branch_id="alt").exists()


def test_change_permission_allows_rename_but_not_branch_delete(client):
    tree_session()
    staff_with(client, "view_agentsession", "change_agentsession")
    url = reverse("admin:conversations_branch_rename", args=["s1"])
    assert client.post(url, {"old": "alt", "new": "x"}).status_code == 302
    url = reverse("admin:conversations_branch_delete", args=["s1"])
    assert client.post(url, {"branch": "x"}).status_code == 403
