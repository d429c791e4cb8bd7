"""The admin's changelists cost the same whatever the size of the database: their filters'
options come from a bounded query (the chosen session's rows, the tool summary, a fixed list),
never a ``SELECT DISTINCT`` over every structure row, and no date drill-down scans the table.
The filters still narrow the list to what they say."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.admin.display import COMMON_MESSAGE_TYPES
from conversations.models import AgentMessage, MessageStructure, TurnUsage
from tests.support.trees import tree_session

pytestmark = pytest.mark.django_db

CHANGELISTS = (
    "agentsession",
    "agentmessage",
    "messagestructure",
    "turnusage",
)


def _scans(queries: list[dict]) -> list[str]:
    """Queries that read the structure, message or usage table without a session or id
    condition (what grows with the database)."""
    out = []
    for q in queries:
        sql = q["sql"]
        if not re.search(r'FROM "?(message_structure|agent_messages|turn_usage)"?', sql):
            continue
        if "LIMIT" in sql or 'session_id" = ' in sql or '"session_id" = ' in sql:
            continue
        if "DISTINCT" in sql or "django_date" in sql or "DATE_TRUNC" in sql.upper():
            out.append(sql)
    return out


@pytest.mark.parametrize("model", CHANGELISTS)
def test_changelists_read_no_whole_table_for_their_filters(admin_client, model):
    tree_session()
    tree_session("other")
    url = reverse(f"admin:conversations_{model}_changelist")
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(url)
    assert response.status_code == 200
    assert _scans(queries.captured_queries) == []


def test_the_filters_offer_the_chosen_sessions_values_and_narrow_the_list(admin_client):
    tree_session()
    tree_session("other")
    url = reverse("admin:conversations_agentmessage_changelist")
    page = admin_client.get(url).content.decode()
    for kind in COMMON_MESSAGE_TYPES[:5]:
        assert f"structure__message_type={kind}" in page
    assert "structure__branch_id=main" in page and "structure__branch_id=alt" not in page
    narrowed = admin_client.get(url, {"session__session_id__exact": "s1"}).content.decode()
    assert "structure__branch_id=alt" in narrowed  # the session's own branches
    response = admin_client.get(url, {"structure__branch_id": "alt"})
    shown = {m.pk for m in response.context["cl"].result_list}
    expected = set(
        MessageStructure.objects.filter(branch_id="alt").values_list("message_id", flat=True)
    )
    assert shown == expected and len(shown) == len(response.context["cl"].result_list)
    tools = admin_client.get(url, {"structure__tool_name": "get_weather"}).context["cl"]
    assert {m.pk for m in tools.result_list} == set(
        MessageStructure.objects.filter(tool_name="get_weather").values_list(
            "message_id", flat=True
        )
    )
    assert AgentMessage.objects.count() > len(tools.result_list) > 0


def test_sessions_filter_by_branches_and_branch_name(admin_client):
    tree_session()
    tree_session("other")
    from tests.support.builders import Writer, turn_items

    Writer("single").turn(turn_items(1), (10, 1))
    url = reverse("admin:conversations_agentsession_changelist")
    branched = admin_client.get(url, {"branched": "1"}).context["cl"]
    assert {s.pk for s in branched.result_list} == {"s1", "other"}
    single = admin_client.get(url, {"branched": "0"}).context["cl"]
    assert {s.pk for s in single.result_list} == {"single"}
    named = admin_client.get(url, {"structure__branch_id": "alt"}).context["cl"]
    assert {s.pk for s in named.result_list} == {"s1", "other"}
    usage = reverse("admin:conversations_turnusage_changelist")
    rows = admin_client.get(usage, {"branch_id": "alt"}).context["cl"].result_list
    assert {u.pk for u in rows} == set(
        TurnUsage.objects.filter(branch_id="alt").values_list("pk", flat=True)
    )
