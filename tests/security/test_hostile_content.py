"""Hostile stored content never takes a page down (issue 12, hole 2).

Rows another writer made (the SDK's own session classes, raw SQL with bytes that are not
UTF-8, JSON text whose escapes decode to lone surrogates or NUL) go through every page that
reads stored rows: the list, the search, the session page and its fragments, compare,
usage.json, the preferred-branch form and every admin page. Each must answer 200 (or, for a
session whose id cannot be named, a 404 / admin redirect: never a 500) and show the bad
characters as U+FFFD.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.admin.utils import quote
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.urls import reverse

from conversations.items import REPLACEMENT, display_text, display_value
from dashboard.links import compare_url, session_url, turns_url, usage_url
from tests.support.hostile import BAD_TEXT, LONE_SURROGATE

SID = "hostile \x07 session\x1b[31m"
BAD_BRANCH = "fork \x1b[0m \x85"
TOOL = "tool\x07name"

ADMIN_MODELS = (
    "agentsession",
    "agentmessage",
    "messagestructure",
    "turnusage",
    "sessioncleargeneration",
    "preferredbranch",
)


def _sqlite() -> bool:
    return connection.vendor == "sqlite"


def _text(value: str | bytes) -> tuple[str, Any]:
    """A TEXT value for raw SQL: bytes are cast to TEXT unchecked (SQLite stores them as is)."""
    if isinstance(value, bytes):
        return "CAST(%s AS TEXT)", value
    return "%s", value


def _insert(table: str, **columns: str | bytes | int | None) -> int | None:
    sql, params = [], []
    for value in columns.values():
        if isinstance(value, str | bytes):
            fragment, param = _text(value)
        else:
            fragment, param = "%s", value
        sql.append(fragment)
        params.append(param)
    returning = " RETURNING id" if table in {"agent_messages", "message_structure"} else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(sql)}){returning}",
            params,
        )
        return cursor.fetchone()[0] if returning else None


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


def _plantable() -> list[str]:
    """BAD_TEXT this database can hold in a JSON column: PostgreSQL's ``json`` type refuses
    lone-surrogate and ``\\u0000`` escapes (control characters it keeps)."""
    return [t for t in BAD_TEXT if _sqlite() or not (_has_surrogate(t) or "\x00" in t)]


def _json(value: Any) -> str:
    return json.dumps(value)  # ASCII: lone surrogates and NUL become \\ud800 / \\u0000 escapes


def plant(
    session_id: str | bytes,
    *,
    branch: str | bytes = BAD_BRANCH,
    tool: str | bytes = TOOL,
    raw_message: bytes | None = None,
) -> None:
    """A session of two branches written with raw SQL, hostile text in every column."""
    _insert("agent_sessions", session_id=session_id)
    seq = 0

    def row(data: str | bytes, btype: str, bid: str | bytes, turn: int, tool_name: Any) -> None:
        nonlocal seq
        seq += 1
        mid = _insert("agent_messages", session_id=session_id, message_data=data)
        _insert(
            "message_structure",
            session_id=session_id,
            message_id=mid,
            branch_id=bid,
            message_type=btype,
            sequence_number=seq,
            user_turn_number=turn,
            branch_turn_number=turn,
            tool_name=tool_name,
        )

    for bid in ("main", branch):
        _insert("branch_reservations", session_id=session_id, branch_id=bid)
        for turn, text in enumerate(_plantable(), 1):
            row(_json({"role": "user", "content": f"{text} hi {turn}"}), "user", bid, turn, None)
            row(
                _json(
                    {
                        "type": "function_call",
                        "name": text,
                        "call_id": text,
                        "arguments": _json({text: text}),
                    }
                ),
                "function_call",
                bid,
                turn,
                tool,
            )
            row(
                _json({"type": "function_call_output", "call_id": text, "output": text}),
                "function_call_output",
                bid,
                turn,
                None,
            )
            row(
                _json(
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": f"{text} answer"}],
                    }
                ),
                "assistant",
                bid,
                turn,
                None,
            )
            _insert(
                "turn_usage",
                session_id=session_id,
                branch_id=bid,
                user_turn_number=turn,
                requests=1,
                input_tokens=3,
                output_tokens=4,
                total_tokens=7,
                input_tokens_details=_json({"cached_tokens": 0, text: 1}),
                output_tokens_details=_json({"reasoning_tokens": 0}),
            )
        if raw_message is not None:
            row(raw_message, "user", bid, len(BAD_TEXT) + 1, None)


def _staff() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def _review_urls(session_id: str, branches: list[str]) -> list[str]:
    urls = [reverse("home"), f"{reverse('home')}?q=hi", f"{reverse('home')}?q=answer&sort=title"]
    for branch in branches:
        urls += [
            session_url(session_id),
            session_url(session_id, branch, 2),
            turns_url(session_id, branch, start=1, end=3),
            usage_url(session_id, branch),
        ]
    urls.append(compare_url(session_id, branches[0], branches[-1]))
    return urls


def _admin_urls(session_id: str) -> list[str]:
    from conversations.models import AgentMessage, MessageStructure, TurnUsage

    urls = [reverse("admin:index"), reverse("admin:app_list", args=["conversations"])]
    urls += [reverse(f"admin:conversations_{m}_changelist") for m in ADMIN_MODELS]
    urls += [f"{reverse('admin:conversations_agentmessage_changelist')}?q=hi"]
    urls += [f"{reverse('admin:conversations_agentsession_changelist')}?q=hostile"]
    urls.append(reverse("admin:conversations_usage_health"))
    pk = quote(session_id)
    urls += [
        reverse("admin:conversations_agentsession_change", args=[pk]),
        reverse("admin:conversations_agentsession_delete", args=[pk]),
        reverse("admin:conversations_branch_rename", args=[pk]),
        reverse("admin:conversations_branch_delete", args=[pk]),
        reverse("admin:conversations_session_duplicate", args=[pk]),
    ]
    for model, objects in (
        ("agentmessage", AgentMessage.objects.all()),
        ("messagestructure", MessageStructure.objects.all()),
        ("turnusage", TurnUsage.objects.all()),
    ):
        for pk_value in list(objects.values_list("pk", flat=True))[:8]:
            urls.append(reverse(f"admin:conversations_{model}_change", args=[quote(pk_value)]))
    return urls


def _get_all(client: Client, urls: list[str], ok: tuple[int, ...] = (200,)) -> str:
    """GET every URL; all must answer one of ``ok``; the pages' text, joined."""
    bodies, failures = [], []
    for url in urls:
        response = client.get(url)
        if response.status_code not in ok:
            failures.append((url, response.status_code))
        elif response.status_code == 200:
            bodies.append(response.content.decode("utf-8"))
    assert failures == []
    return "\n".join(bodies)


# ---- the display-safe function ------------------------------------------------------------------


@pytest.mark.parametrize("text", BAD_TEXT)
def test_display_text_is_encodable(text):
    shown = display_text(text)
    shown.encode("utf-8")
    assert "\x00" not in shown and "\x07" not in shown and "\x1b" not in shown


def test_display_text_replaces_visibly():
    assert display_text(LONE_SURROGATE) == f"{REPLACEMENT} hi"
    assert display_text("ok\n\ttext") == "ok\n\ttext"


def test_display_value_walks_keys_and_values():
    assert display_value({"\ud800": ["\x00", 1]}) == {REPLACEMENT: [REPLACEMENT, 1]}


# ---- rows written with raw SQL (both databases) -----------------------------------------------


@pytest.mark.django_db
def test_review_pages_render_hostile_rows():
    plant(SID)
    body = _get_all(_staff(), _review_urls(SID, ["main", BAD_BRANCH]))
    assert REPLACEMENT in body
    assert "\x07" not in body and "\x00" not in body


@pytest.mark.django_db
def test_prefer_hostile_branch_redirects():
    plant(SID)
    response = _staff().post(reverse("session_prefer", args=[SID]), {"branch": BAD_BRANCH})
    assert response.status_code == 303
    assert response.headers["Location"] == session_url(SID, BAD_BRANCH)


@pytest.mark.django_db
def test_admin_pages_render_hostile_rows():
    plant(SID)
    body = _get_all(_staff(), _admin_urls(SID))
    assert REPLACEMENT in body


# ---- bytes that are not UTF-8 (SQLite stores them; PostgreSQL refuses them) ------------------

NOT_UTF8_SID = b"raw \xed\xa0\x80 id \xff"
NOT_UTF8_MESSAGE = b'{"role": "user", "content": "raw \xed\xa0\x80 bytes \xff hi"}'


@pytest.mark.django_db
@pytest.mark.skipif("connection.vendor != 'sqlite'", reason="PostgreSQL TEXT cannot hold them")
def test_pages_render_rows_that_are_not_utf8():
    plant(SID, branch=b"br \xed\xa0\x80", tool=b"t\xff", raw_message=NOT_UTF8_MESSAGE)
    plant(NOT_UTF8_SID, raw_message=NOT_UTF8_MESSAGE)
    client = _staff()
    body = _get_all(client, _review_urls(SID, ["main"]))
    assert "raw \ufffd" in body
    # The id that cannot be named in a URL: listed, and its own pages never 500.
    shown = NOT_UTF8_SID.decode("utf-8", "replace")
    _get_all(client, _review_urls(shown, ["main"]), ok=(200, 404))
    _get_all(client, _admin_urls(SID), ok=(200,))
    _get_all(client, _admin_urls(shown), ok=(200, 302, 404))


# ---- rows written by the SDK's own classes (SQLite: same file) --------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("connection.vendor != 'sqlite'", reason="the SDK's classes write SQLite")
def test_pages_render_rows_written_by_the_sdk():
    from agents.extensions.memory.advanced_sqlite_session import AdvancedSQLiteSession

    name = str(connection.settings_dict["NAME"])
    if name == ":memory:" or name.startswith("file:"):
        pytest.skip("needs a SQLite file the SDK can open")
    sdk = AdvancedSQLiteSession(session_id=SID, db_path=Path(name), create_tables=False)
    items: list[Any] = []
    for text in BAD_TEXT:
        # The SDK binds the tool name as TEXT: sqlite3 refuses lone surrogates there.
        name = display_text(text) if _has_surrogate(text) else text
        items += [
            {"role": "user", "content": f"{text} hi"},
            {"type": "function_call", "name": name, "call_id": "c", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": text},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            },
        ]
    async_to_sync(sdk.add_items)(items)
    async_to_sync(sdk.create_branch_from_turn)(2, BAD_BRANCH)
    async_to_sync(sdk.add_items)(items[:4])
    sdk.close()
    client = _staff()
    body = _get_all(client, _review_urls(SID, ["main", BAD_BRANCH]))
    assert REPLACEMENT in body
    _get_all(client, _admin_urls(SID))
