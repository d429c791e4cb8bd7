"""The admin, through the test client: editing with invariants, actions, audit, permissions."""

from __future__ import annotations

import json

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission, User
from django.db import connection  # noqa: F401 - used by skipif strings
from django.urls import reverse

from conversations import services
from conversations.models import (
    AgentMessage,
    AgentSession,
    BranchReservation,
    MessageStructure,
    TurnUsage,
)
from conversations.session import DjangoSession
from tests.conversations.admin_data import call, tree_session
from tests.conversations.sdk_harness import assistant, user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def staff_with(client, *codenames: str):
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    for codename in codenames:
        staff.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(staff)
    return client


def change_url(model: str, pk) -> str:
    return reverse(f"admin:conversations_{model}_change", args=[quote(pk)])


def message(**lookup) -> AgentMessage:
    return AgentMessage.objects.get(**lookup)


def edit(client, msg: AgentMessage, text: str):
    return client.post(change_url("agentmessage", msg.pk), {"message_data": text})


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


def test_message_search_finds_content(admin):
    tree_session()
    response = admin.get(reverse("admin:conversations_agentmessage_changelist") + "?q=Lyon")
    assert [m.message_data["content"] for m in response.context["cl"].result_list] == [
        "What about Lyon?"
    ]


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
    from conversations.admin import MessageInline

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


def test_message_editor_is_indented_monospace_json(admin):
    tree_session()
    msg = message(message_data__name="get_weather")
    html = admin.get(change_url("agentmessage", msg.pk)).content.decode()
    assert "forkview-json" in html and "monospace" in html
    assert "&quot;name&quot;: &quot;get_weather&quot;,\n  &quot;arguments&quot;" in html or (
        "\n  &quot;name&quot;: &quot;get_weather&quot;" in html
    )


# ---- message edits ---------------------------------------------------------------------


def test_message_edit_relabels_structure_and_logs_a_diff(admin):
    tree_session()
    msg = message(message_data__name="get_weather")
    item = {**msg.message_data, "name": "get_forecast"}
    response = edit(admin, msg, json.dumps(item, indent=2))
    assert response.status_code == 302
    assert set(msg.structure.values_list("tool_name", flat=True)) == {"get_forecast"}
    entry = LogEntry.objects.get(object_id=str(msg.pk), action_flag=CHANGE)
    text = entry.get_change_message()
    assert "changed keys: name" in text
    assert '-  "name": "get_weather"' in text and '+  "name": "get_forecast"' in text
    history = admin.get(reverse("admin:conversations_agentmessage_history", args=[msg.pk]))
    assert "get_forecast" in history.content.decode()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{not json", "Not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"role": "user"}', "A message needs &#x27;content&#x27;"),
        ('{"type": "function_call", "name": "f", "call_id": "c"}', "needs &#x27;arguments&#x27;"),
        ('{"role": "assistant", "content": "now not a user"}', "renumber every later turn"),
    ],
)
def test_message_edit_validation_errors_are_shown(admin, text, error):
    tree_session()
    msg = message(message_data__content="And tomorrow?")
    before = msg.message_data
    response = edit(admin, msg, text)
    assert response.status_code == 200
    html = response.content.decode()
    assert "errornote" in html and error in html
    msg.refresh_from_db()
    assert msg.message_data == before
    assert not LogEntry.objects.exists()


def test_message_edit_invalid_json_says_where(admin):
    tree_session()
    msg = message(message_data__content="Thanks")
    html = edit(admin, msg, '{\n  "role": "user",,\n}').content.decode()
    assert "line 2, column 18" in html


def test_message_history_keeps_the_diff_lines(admin):
    tree_session()
    msg = message(message_data__content="Thanks")
    assert edit(admin, msg, json.dumps(user("Thank you"))).status_code == 302
    url = reverse("admin:conversations_agentmessage_history", args=[msg.pk])
    html = admin.get(url).content.decode()
    assert "white-space: pre-wrap" in html
    assert '-  "content": "Thanks"' in html.replace("&quot;", '"')


def test_message_edit_error_keeps_the_typed_text(admin):
    tree_session()
    msg = message(message_data__content="Thanks")
    html = edit(admin, msg, '{"role": "user", "content": "oops",}').content.decode()
    assert "oops" in html


@pytest.mark.skipif("connection.vendor != 'sqlite'", reason="jsonb stores only valid JSON")
def test_undecodable_message_can_be_repaired(admin):
    from conversations.fields import RawJSON

    tree_session()
    session = DjangoSession(session_id="s1")
    call(session, "add_items", [assistant("placeholder", "msg_x")])
    msg = message(message_data__id="msg_x")
    AgentMessage.objects.filter(pk=msg.pk).update(message_data=RawJSON('{"role": "assistant", '))
    html = admin.get(change_url("agentmessage", msg.pk)).content.decode()
    assert "{&quot;role&quot;: &quot;assistant&quot;, " in html
    assert edit(admin, msg, json.dumps(assistant("fixed", "msg_x"))).status_code == 302
    assert call(session, "get_items")[-1] == assistant("fixed", "msg_x")


def test_messages_cannot_be_added_in_the_admin(admin):
    assert admin.get(reverse("admin:conversations_agentmessage_add")).status_code == 403


# ---- deletes ---------------------------------------------------------------------------


def test_delete_of_a_middle_message_is_refused_with_a_reason(admin):
    tree_session()
    msg = message(message_data__content="And tomorrow?")
    url = reverse("admin:conversations_agentmessage_delete", args=[msg.pk])
    response = admin.post(url, {"post": "yes"}, follow=True)
    assert "Only the last item of a branch can be deleted" in response.content.decode()
    assert AgentMessage.objects.filter(pk=msg.pk).exists()


def test_delete_of_the_last_item_pops_it(admin):
    tree_session()
    msg = message(message_data__id="msg_3")  # last on main
    url = reverse("admin:conversations_agentmessage_delete", args=[msg.pk])
    assert admin.get(url).status_code == 200
    assert admin.post(url, {"post": "yes"}).status_code == 302
    assert not AgentMessage.objects.filter(pk=msg.pk).exists()
    assert LogEntry.objects.filter(object_id=str(msg.pk)).exists()
    assert TurnUsage.objects.filter(branch_id="main", user_turn_number=3).exists()


def test_structure_rows_are_read_only_and_only_the_last_can_be_deleted(admin):
    tree_session()
    first = (
        MessageStructure.objects.filter(session_id="s1", branch_id="alt")
        .order_by("sequence_number")
        .first()
    )
    response = admin.post(change_url("messagestructure", first.pk), {"branch_id": "x"})
    assert response.status_code == 403
    url = reverse("admin:conversations_messagestructure_delete", args=[first.pk])
    html = admin.post(url, {"post": "yes"}, follow=True).content.decode()
    assert "Only the last item" in html
    last = (
        MessageStructure.objects.filter(session_id="s1", branch_id="alt")
        .order_by("-sequence_number")
        .first()
    )
    url = reverse("admin:conversations_messagestructure_delete", args=[last.pk])
    assert admin.post(url, {"post": "yes"}).status_code == 302
    assert not MessageStructure.objects.filter(pk=last.pk).exists()


def test_session_delete_is_a_clear_that_keeps_reservations(admin):
    tree_session()
    url = reverse("admin:conversations_agentsession_delete", args=["s1"])
    assert admin.post(url, {"post": "yes"}).status_code == 302
    assert not AgentMessage.objects.filter(session_id="s1").exists()
    assert BranchReservation.objects.filter(session_id="s1", branch_id="alt").exists()


# ---- usage -----------------------------------------------------------------------------


def usage_form(row: TurnUsage, **changes) -> dict:
    data = {
        "requests": row.requests,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "total_tokens": row.total_tokens,
        "input_tokens_details": json.dumps(row.input_tokens_details),
        "output_tokens_details": json.dumps(row.output_tokens_details),
    }
    return {**data, **changes}


def test_usage_total_mismatch_is_a_form_error(admin):
    tree_session()
    row = TurnUsage.objects.get(session_id="s1", branch_id="main", user_turn_number=1)
    response = admin.post(change_url("turnusage", row.pk), usage_form(row, input_tokens=110))
    assert response.status_code == 200
    assert "total_tokens must equal input_tokens + output_tokens (130)" in response.content.decode()


def test_usage_total_is_filled_in_when_empty(admin):
    tree_session()
    row = TurnUsage.objects.get(session_id="s1", branch_id="main", user_turn_number=1)
    response = admin.post(
        change_url("turnusage", row.pk), usage_form(row, input_tokens=110, total_tokens="")
    )
    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.input_tokens, row.total_tokens) == (110, 130)
    assert row.branch_id == "main" and row.user_turn_number == 1


def test_usage_add_needs_an_existing_turn(admin):
    tree_session()
    TurnUsage.objects.filter(session_id="s1", branch_id="main", user_turn_number=2).delete()
    url = reverse("admin:conversations_turnusage_add")
    data = {
        "session": "s1",
        "branch_id": "main",
        "requests": 1,
        "input_tokens": 1,
        "output_tokens": 2,
        "total_tokens": "",
        "input_tokens_details": "",
        "output_tokens_details": "",
    }
    html = admin.post(url, {**data, "user_turn_number": 9}).content.decode()
    assert "has no turn 9" in html
    html = admin.post(url, {**data, "user_turn_number": 1}).content.decode()
    assert "already exists" in html  # the (session, branch, turn) unique constraint
    assert admin.post(url, {**data, "user_turn_number": 2}).status_code == 302
    assert (
        TurnUsage.objects.get(session_id="s1", branch_id="main", user_turn_number=2).total_tokens
        == 3
    )


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
    assert "Cannot delete the &#x27;main&#x27; branch" in html


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


def test_services_constants_are_what_the_admin_shows():
    assert "renumber every later turn" in services.USER_TURN_CHANGE_ERROR


@pytest.mark.parametrize(
    ("item", "preview"),
    [
        (assistant("Sunny\n\nin   Paris."), "Sunny in Paris."),
        (user("What's up?"), "What's up?"),
        (
            {
                "role": "user",
                "content": [{"type": "input_text", "text": "see"}, {"type": "input_image"}],
            },
            "see [input_image]",
        ),
        ({"type": "reasoning", "summary": [{"type": "summary_text", "text": "Think."}]}, "Think."),
        (
            {
                "type": "web_search_call",
                "id": "ws_1",
                "action": {"type": "search", "query": "Lyon"},
            },
            "web_search_call: Lyon",
        ),
        ({"type": "function_call_output", "call_id": "c", "output": "ok"}, "ok"),
        ({"type": "mcp_list_tools", "tools": []}, '{"type": "mcp_list_tools", "tools": []}'),
    ],
)
def test_item_preview_is_one_readable_line(item, preview):
    from conversations.admin import item_preview

    assert item_preview(item) == preview


def test_item_preview_is_cut_to_its_length():
    from conversations.admin import PREVIEW_LENGTH, item_preview

    text = item_preview(user("x" * (PREVIEW_LENGTH + 10)))
    assert text == "x" * PREVIEW_LENGTH + "..."
