"""conversations.services: edits that keep the SDK's invariants."""

from __future__ import annotations

import pytest

from conversations import services
from conversations.exchange import tree_export
from conversations.models import (
    AgentMessage,
    AgentSession,
    BranchReservation,
    MessageStructure,
    TurnUsage,
)
from conversations.session import DjangoSession
from tests.support.sdk_harness import TOOL_ITEMS, assistant, function_call, user
from tests.support.trees import call, tree_session

pytestmark = pytest.mark.django_db


def rows(session_id: str, branch: str = "main") -> list[tuple]:
    return list(
        MessageStructure.objects.filter(session_id=session_id, branch_id=branch)
        .order_by("sequence_number")
        .values_list("message_type", "tool_name", "user_turn_number", "branch_turn_number")
    )


# ---- item_problems ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "item",
    [
        {"role": "user", "content": "hi"},
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "x"}]},
        {"type": "function_call", "name": "f", "call_id": "c", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": "ok"},
        {"type": "brand_new_item_kind", "payload": 1},
        *[i for i in TOOL_ITEMS if i.get("type") not in ("function_call",)],
    ],
)
def test_item_problems_accepts_known_and_unknown_shapes(item):
    assert services.item_problems(item=item) == []


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ([1, 2], "JSON object"),
        ("text", "JSON object"),
        ({}, "needs a 'role'"),
        ({"role": "robot", "content": "x"}, "'role' must be one of"),
        ({"role": "user"}, "needs 'content'"),
        ({"role": "user", "content": 3}, "string or a list"),
        ({"role": "user", "content": "x", "type": "function_call"}, "type 'message'"),
        ({"type": 7}, "'type' must be a string"),
        ({"type": "function_call", "name": "f", "call_id": "c"}, "'arguments'"),
        ({"type": "function_call", "name": "f", "call_id": "c", "arguments": {}}, "'arguments'"),
        ({"type": "function_call", "name": "", "call_id": "c", "arguments": "{}"}, "empty"),
        ({"type": "function_call_output", "output": "x"}, "'call_id'"),
        ({"type": "function_call_output", "call_id": "c"}, "needs 'output'"),
    ],
)
def test_item_problems_rejects_bad_shapes(item, needle):
    assert any(needle in p for p in services.item_problems(item=item))


# ---- message_update --------------------------------------------------------------------


def test_message_update_relabels_rows_on_every_branch():
    tree_session()
    message = AgentMessage.objects.get(message_data__name="get_weather")
    new = function_call("get_forecast", "c1", '{"city": "Paris"}', namespace="meteo")
    result = services.message_update(message_id=message.pk, item=new)
    assert result.relabelled == 2  # main and the copy on "alt"
    labels = set(message.structure.values_list("branch_id", "message_type", "tool_name"))
    assert labels == {
        ("main", "function_call", "meteo.get_forecast"),
        ("alt", "function_call", "meteo.get_forecast"),
    }
    assert "changed keys: name" in result.diff and "added keys: namespace" in result.diff
    assert '+  "name": "get_forecast"' in result.diff


def test_message_update_type_change_relabels_message_type():
    tree_session()
    message = AgentMessage.objects.get(message_data__type="reasoning")
    services.message_update(
        message_id=message.pk, item={"type": "mcp_call", "server_label": "gh", "name": "search"}
    )
    assert set(message.structure.values_list("message_type", "tool_name")) == {
        ("mcp_call", "gh.search")
    }


@pytest.mark.parametrize(
    ("find", "new"),
    [
        ({"message_data__content": "And tomorrow?"}, assistant("now an assistant")),
        ({"message_data__content": "be brief"}, user("now a user")),
    ],
)
def test_message_update_refuses_user_turn_change(find, new):
    tree_session()
    message = AgentMessage.objects.get(**find)
    before = rows("s1")
    with pytest.raises(services.ServiceError, match="renumber every later turn"):
        services.message_update(message_id=message.pk, item=new)
    assert rows("s1") == before


def test_message_update_refuses_invalid_item():
    tree_session()
    message = AgentMessage.objects.get(message_data__content="Thanks")
    with pytest.raises(services.ServiceError, match="needs 'content'"):
        services.message_update(message_id=message.pk, item={"role": "user"})


def test_message_update_keeps_user_role_with_new_content():
    session = tree_session()
    message = AgentMessage.objects.get(message_data__content="Thanks")
    services.message_update(message_id=message.pk, item=user("Thank you!"))
    turns = call(session, "get_conversation_turns")
    assert [t["content"] for t in turns][-1] == "Thank you!"


# ---- deletes ---------------------------------------------------------------------------


def test_message_delete_refuses_item_followed_by_others():
    tree_session()
    message = AgentMessage.objects.get(message_data__content="And tomorrow?")
    with pytest.raises(services.ServiceError, match="Only the last item"):
        services.message_delete(message_id=message.pk)
    assert AgentMessage.objects.filter(pk=message.pk).exists()


def test_message_delete_last_item_pops_it_and_its_empty_turn_usage():
    session = tree_session()
    call(session, "switch_to_branch", "alt")
    last = AgentMessage.objects.get(message_data__id="msg_4")
    services.message_delete(message_id=last.pk)
    assert TurnUsage.objects.filter(branch_id="alt", user_turn_number=2).exists()  # turn not empty
    lyon = AgentMessage.objects.get(message_data__content="What about Lyon?")
    services.message_delete(message_id=lyon.pk)
    assert not TurnUsage.objects.filter(branch_id="alt", user_turn_number=2).exists()
    assert [i.get("content") for i in call(session, "get_items")][-1][0][
        "text"
    ] == "Sunny in Paris."


def test_message_delete_shared_message_must_be_last_on_every_branch():
    session = DjangoSession(session_id="s2")
    call(session, "add_items", [user("a"), assistant("b")])
    call(session, "add_items", [user("c")])
    call(session, "create_branch_from_turn", 2, "copy")  # copies a, b: b is last on "copy"
    b = AgentMessage.objects.get(message_data__id="msg_1")
    with pytest.raises(services.ServiceError, match="branch 'main'"):
        services.message_delete(message_id=b.pk)


def test_structure_row_delete_pops_only_the_last_row():
    session = tree_session()
    first = (
        MessageStructure.objects.filter(session_id="s1", branch_id="alt")
        .order_by("sequence_number")
        .first()
    )
    with pytest.raises(services.ServiceError, match="Only the last item"):
        services.structure_row_delete(row_id=first.pk)
    last = (
        MessageStructure.objects.filter(session_id="s1", branch_id="alt")
        .order_by("-sequence_number")
        .first()
    )
    services.structure_row_delete(row_id=last.pk)
    assert not AgentMessage.objects.filter(pk=last.message_id).exists()
    call(session, "switch_to_branch", "alt")
    assert call(session, "get_items")[-1] == user("What about Lyon?")


def test_structure_row_delete_keeps_message_shared_with_another_branch():
    session = DjangoSession(session_id="s3")
    call(session, "add_items", [user("a"), assistant("b")])
    call(session, "add_items", [user("c")])
    call(session, "create_branch_from_turn", 2, "copy")
    row = MessageStructure.objects.get(session_id="s3", branch_id="copy", message_type="assistant")
    services.structure_row_delete(row_id=row.pk)
    assert AgentMessage.objects.filter(pk=row.message_id).exists()  # still on main


def test_message_delete_plain_session_only_newest():
    AgentSession.objects.create(session_id="plain")
    a = AgentMessage.objects.create(session_id="plain", message_data=user("a"))
    b = AgentMessage.objects.create(session_id="plain", message_data=assistant("b"))
    with pytest.raises(services.ServiceError, match="newest message"):
        services.message_delete(message_id=a.pk)
    services.message_delete(message_id=b.pk)
    assert list(AgentMessage.objects.values_list("pk", flat=True)) == [a.pk]


# ---- branches --------------------------------------------------------------------------


def test_branch_rename_moves_rows_and_usage_and_keeps_old_reserved():
    session = tree_session()
    call(session, "switch_to_branch", "alt")
    before_items = call(session, "get_items")
    before_usage = call(session, "get_turn_usage")
    moved = services.branch_rename(session_id="s1", old="alt", new="lyon")
    assert moved == 8
    renamed = DjangoSession(session_id="s1", branch_id="lyon")
    assert call(renamed, "get_items") == before_items
    assert call(renamed, "get_turn_usage") == before_usage
    reserved = set(
        BranchReservation.objects.filter(session_id="s1").values_list("branch_id", flat=True)
    )
    assert {"main", "alt", "lyon"} <= reserved
    with pytest.raises(ValueError, match="already been used"):
        call(renamed, "create_branch_from_turn", 1, "alt")


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ("main", "x", "cannot be renamed"),
        ("alt", "main", "already been used"),
        ("alt", "alt", "already been used"),
        ("alt", "  ", "cannot be empty"),
        ("nope", "x", "does not exist"),
    ],
)
def test_branch_rename_refusals(old, new, match):
    tree_session()
    with pytest.raises(services.ServiceError, match=match):
        services.branch_rename(session_id="s1", old=old, new=new)
    assert MessageStructure.objects.filter(branch_id="alt").count() == 8


def test_branch_rename_refuses_an_id_used_before_and_deleted():
    tree_session()
    services.branch_rename(session_id="s1", old="alt", new="b2")
    services.branch_delete(session_id="s1", branch_id="b2")
    call(DjangoSession(session_id="s1"), "create_branch_from_turn", 2, "b3")
    with pytest.raises(services.ServiceError, match="already been used"):
        services.branch_rename(session_id="s1", old="b3", new="b2")


def test_branch_delete_removes_rows_and_usage_not_the_reservation():
    tree_session()
    services.branch_delete(session_id="s1", branch_id="alt")
    assert not MessageStructure.objects.filter(branch_id="alt").exists()
    assert not TurnUsage.objects.filter(branch_id="alt").exists()
    assert not AgentMessage.objects.filter(message_data__content="What about Lyon?").exists()
    assert BranchReservation.objects.filter(session_id="s1", branch_id="alt").exists()
    with pytest.raises(ValueError, match="main"):
        services.branch_delete(session_id="s1", branch_id="main")


# ---- sessions --------------------------------------------------------------------------


def test_session_duplicate_copies_the_whole_tree():
    tree_session()
    copied = services.session_duplicate(session_id="s1", new_session_id="s1-copy")
    assert copied == AgentMessage.objects.filter(session_id="s1").count()
    original, copy = tree_export(session_id="s1"), tree_export(session_id="s1-copy")
    copy["session"]["session_id"] = "s1"
    assert copy == original
    old_ids = set(AgentMessage.objects.filter(session_id="s1").values_list("id", flat=True))
    new_ids = set(AgentMessage.objects.filter(session_id="s1-copy").values_list("id", flat=True))
    assert not old_ids & new_ids
    dup = DjangoSession(session_id="s1-copy", branch_id="alt")
    assert call(dup, "get_items") == call(
        DjangoSession(session_id="s1", branch_id="alt"), "get_items"
    )


def test_session_duplicate_refuses_used_id():
    tree_session()
    tree_session("s2")
    with pytest.raises(services.ServiceError, match="already exists"):
        services.session_duplicate(session_id="s1", new_session_id="s2")
    call(DjangoSession(session_id="s2"), "clear_session")  # reservations survive a clear
    with pytest.raises(services.ServiceError, match="already exists"):
        services.session_duplicate(session_id="s1", new_session_id="s2")


def test_structure_rebuild_numbers_like_add_items():
    items = [
        {"role": "system", "content": "sys"},
        user("a"),
        *TOOL_ITEMS[:6],
        assistant("b"),
        user("c"),
        {"role": "developer", "content": "d", "type": "message"},
        user("e"),
    ]
    call(DjangoSession(session_id="ref"), "add_items", items)
    AgentSession.objects.create(session_id="plain")
    for item in items:
        AgentMessage.objects.create(session_id="plain", message_data=item)
    result = services.structure_rebuild(session_id="plain")
    assert result.created == len(items)
    assert rows("plain") == rows("ref")
    assert list(
        MessageStructure.objects.filter(session_id="plain")
        .order_by("id")
        .values_list("sequence_number", flat=True)
    ) == list(range(1, len(items) + 1))
    assert services.structure_rebuild(session_id="plain").created == 0  # idempotent
    assert BranchReservation.objects.filter(session_id="plain", branch_id="main").exists()


def test_structure_rebuild_appends_after_existing_rows():
    session = DjangoSession(session_id="mixed")
    call(session, "add_items", [user("a"), assistant("b")])
    AgentMessage.objects.create(session_id="mixed", message_data=user("c"))
    services.structure_rebuild(session_id="mixed")
    assert rows("mixed")[-1] == ("user", None, 2, 2)
    assert call(session, "get_items")[-1] == user("c")


def test_session_delete_is_clear_session():
    tree_session()
    services.session_delete(session_id="s1")
    assert not AgentSession.objects.filter(pk="s1").exists()
    assert not MessageStructure.objects.filter(session_id="s1").exists()
    assert BranchReservation.objects.filter(session_id="s1", branch_id="alt").exists()


# ---- usage health ----------------------------------------------------------------------


def test_usage_health_reports_both_directions():
    tree_session()
    call(DjangoSession(session_id="s1"), "add_items", [user("no usage here")])
    TurnUsage.objects.create(session_id="s1", branch_id="alt", user_turn_number=9, requests=1)
    report = services.usage_health(session_ids=["s1"])
    missing = [(k.branch_id, k.user_turn_number, k.usage_on) for k in report.turns_without_usage]
    # alt's turn 1 is a copy: the SDK keeps its usage on main only.
    assert missing == [("alt", 1, ("main",)), ("main", 4, ())]
    assert [(k.branch_id, k.user_turn_number) for k in report.usage_without_turns] == [("alt", 9)]
    assert not report.healthy
    assert services.usage_health(session_ids=["other"]).healthy


def test_usage_total_problems():
    assert services.usage_total_problems(input_tokens=3, output_tokens=4, total_tokens=7) == []
    assert (
        "(7)" in services.usage_total_problems(input_tokens=3, output_tokens=4, total_tokens=8)[0]
    )
