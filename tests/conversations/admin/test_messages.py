"""The message and structure-row admins: the JSON editor, its checks, pop-like deletes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.staticfiles import finders
from django.db import connection  # noqa: F401 - used by skipif strings
from django.urls import reverse

from conversations import services
from conversations.admin.display import PREVIEW_LENGTH, item_preview
from conversations.models import AgentMessage, MessageStructure, TurnUsage
from conversations.session import DjangoSession
from tests.conversations.admin.pages import change_url, edit, message
from tests.support.sdk_harness import assistant, user
from tests.support.trees import call, tree_session

pytestmark = pytest.mark.django_db


def test_message_search_finds_content(admin):
    tree_session()
    response = admin.get(reverse("admin:conversations_agentmessage_changelist") + "?q=Lyon")
    assert [m.message_data["content"] for m in response.context["cl"].result_list] == [
        "What about Lyon?"
    ]


def _admin_css_rule(selector: str) -> str:
    """The declarations of ``selector`` in the admin's stylesheet (the CSP allows no inline
    style, so the look lives in static/dashboard/css/admin.css)."""
    css = Path(finders.find("dashboard/css/admin.css")).read_text()
    start = css.index(selector)
    return css[start : css.index("}", start)]


def test_message_editor_is_indented_monospace_json(admin):
    tree_session()
    msg = message(message_data__name="get_weather")
    html = admin.get(change_url("agentmessage", msg.pk)).content.decode()
    assert "forkview-json" in html and "dashboard/css/admin.css" in html
    assert "monospace" in _admin_css_rule(".forkview-json {")
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
    assert "forkview-history" in html and "dashboard/css/admin.css" in html
    assert "white-space: pre-wrap" in _admin_css_rule(".forkview-history #change-history")
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
    assert item_preview(item) == preview


def test_item_preview_is_cut_to_its_length():
    text = item_preview(user("x" * (PREVIEW_LENGTH + 10)))
    assert text == "x" * PREVIEW_LENGTH + "..."
