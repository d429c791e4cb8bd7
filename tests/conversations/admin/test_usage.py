"""The usage admin: counts checked by the service's rules, saved through the service."""

from __future__ import annotations

import json

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.urls import reverse

from conversations import services
from conversations.models import TurnUsage
from tests.conversations.admin.pages import change_url
from tests.support.trees import tree_session

pytestmark = pytest.mark.django_db


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


def test_negative_counts_are_refused(admin):
    tree_session()
    row = TurnUsage.objects.get(session_id="s1", branch_id="main", user_turn_number=1)
    for field in ("requests", "input_tokens", "output_tokens", "total_tokens"):
        response = admin.post(change_url("turnusage", row.pk), usage_form(row, **{field: -5}))
        assert response.status_code == 200, field
        assert "Ensure this value is greater than or equal to 0." in response.content.decode()
        assert response.context["adminform"].form.errors[field]
    row.refresh_from_db()
    assert (row.requests, row.input_tokens, row.output_tokens, row.total_tokens) == (
        2,
        100,
        20,
        120,
    )


def test_usage_fields_are_built_non_negative():
    from conversations.admin.forms import TurnUsageForm

    form = TurnUsageForm(
        data={"requests": 1, "input_tokens": -5, "output_tokens": 1, "total_tokens": ""}
    )
    assert not form.is_valid()
    assert "input_tokens" in form.errors
    assert form.fields["input_tokens"].widget.attrs["min"] == 0


def test_usage_edit_is_saved_through_the_service(admin, monkeypatch):
    tree_session()
    row = TurnUsage.objects.get(session_id="s1", branch_id="main", user_turn_number=1)
    calls = []
    save = services.turn_usage_save

    def spy(**kwargs):
        calls.append(kwargs)
        return save(**kwargs)

    monkeypatch.setattr(services, "turn_usage_save", spy)
    data = usage_form(row, requests=3, output_tokens=30, total_tokens=130)
    response = admin.post(change_url("turnusage", row.pk), data)
    assert response.status_code == 302
    assert [(c["session_id"], c["branch_id"], c["user_turn_number"]) for c in calls] == [
        ("s1", "main", 1)
    ]
    stored = TurnUsage.objects.get(pk=row.pk)  # the row keeps its id and created_at
    assert (stored.requests, stored.output_tokens, stored.total_tokens) == (3, 30, 130)
    assert stored.created_at == row.created_at
    assert stored.input_tokens_details == row.input_tokens_details
    entry = LogEntry.objects.get(object_id=str(row.pk), action_flag=CHANGE)
    assert "Output tokens" in entry.get_change_message()


def test_usage_total_mismatch_is_refused_with_the_services_message(admin):
    tree_session()
    row = TurnUsage.objects.get(session_id="s1", branch_id="main", user_turn_number=1)
    response = admin.post(change_url("turnusage", row.pk), usage_form(row, total_tokens=999))
    assert response.status_code == 200
    expected = services.TOTAL_TOKENS_ERROR.format(expected=120)
    assert response.context["adminform"].form.errors["total_tokens"] == [expected]
    assert TurnUsage.objects.get(pk=row.pk).total_tokens == 120


def test_a_refusal_at_save_time_is_shown_and_writes_nothing(admin, monkeypatch):
    tree_session()
    row = TurnUsage.objects.get(session_id="s1", branch_id="main", user_turn_number=1)

    def refuse(**kwargs):
        raise services.ServiceError("The turn's items were deleted meanwhile.")

    monkeypatch.setattr(services, "turn_usage_save", refuse)
    url = change_url("turnusage", row.pk)
    response = admin.post(url, usage_form(row, requests=9), follow=True)
    assert response.redirect_chain == [(url, 302)]
    assert "The turn&#x27;s items were deleted meanwhile." in response.content.decode()
    assert TurnUsage.objects.get(pk=row.pk).requests == 2
    assert not LogEntry.objects.exists()
