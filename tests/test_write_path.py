"""One write path: only ``conversations/writes.py`` writes the SDK's tables.

Two checks. Statically, no module of the apps (migrations and the DDL aside) holds SQL that
writes those tables, imports ``conversations.sql`` (but the write module and the adapter), or
calls an ORM write on their models. At run time, every INSERT, UPDATE and DELETE that reaches
those tables while the adapter, the staff services and the importer do their work is issued
from inside ``conversations/writes.py``.
"""

from __future__ import annotations

import ast
import re
import traceback
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.db import connection

from conversations import services
from conversations.exchange import tree_export, tree_import
from conversations.models import AgentMessage, MessageStructure, TurnUsage
from conversations.session import DjangoSession
from tests.support.sdk_harness import assistant, user

REPO = Path(__file__).resolve().parent.parent
WRITE_MODULE = REPO / "conversations" / "writes.py"
SQL_MODULE = REPO / "conversations" / "sql.py"
#: May import conversations.sql: the write module, and the adapter (it reads with it).
SQL_IMPORTERS = {WRITE_MODULE, REPO / "conversations" / "session.py"}
#: The SDK's DDL (CREATE TABLE ... IF NOT EXISTS), run by migration 0001.
DDL_MODULE = REPO / "conversations" / "schema.py"

SDK_TABLES = (
    "agent_sessions",
    "agent_messages",
    "message_structure",
    "turn_usage",
    "branch_reservations",
    "session_clear_generations",
)
SDK_MODELS = {
    "AgentSession",
    "AgentMessage",
    "MessageStructure",
    "TurnUsage",
    "BranchReservation",
    "SessionClearGeneration",
}
#: Relations from an instance to SDK rows (``message.structure``, ``session.usage``...).
SDK_RELATIONS = {"messages", "structure", "usage"}
ORM_WRITES = {
    "create",
    "bulk_create",
    "bulk_update",
    "update",
    "update_or_create",
    "get_or_create",
    "delete",
    "save",
    "raw",
}
WRITE_SQL = re.compile(
    r"\b(INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+\"?(" + "|".join(SDK_TABLES) + r")\b",
    re.IGNORECASE,
)


def _app_modules() -> list[Path]:
    files = sorted((REPO / "conversations").rglob("*.py")) + sorted(
        (REPO / "dashboard").rglob("*.py")
    )
    return [f for f in files if "migrations" not in f.parts]


def _chain_names(node: ast.AST) -> set[str]:
    """Every name and attribute along a call's receiver chain (``A.objects.filter(...)``)."""
    names: set[str] = set()
    while True:
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Name):
            names.add(node.id)
            return names
        else:
            return names


def _orm_writes(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in ORM_WRITES:
            continue
        receiver = _chain_names(node.func.value)
        if receiver & SDK_MODELS or receiver & SDK_RELATIONS:
            found.append(f"{path.relative_to(REPO)}:{node.lineno} .{node.func.attr}()")
    return found


def test_no_module_but_the_write_module_writes_sdk_tables_in_sql():
    offenders = [
        f"{path.relative_to(REPO)}: {match.group(0)}"
        for path in _app_modules()
        if path not in (WRITE_MODULE, SQL_MODULE, DDL_MODULE)
        for match in WRITE_SQL.finditer(path.read_text())
    ]
    assert offenders == []


def test_no_module_but_the_write_module_calls_orm_writes_on_sdk_models():
    offenders = [
        hit for path in _app_modules() if path != WRITE_MODULE for hit in _orm_writes(path)
    ]
    assert offenders == []


def test_the_write_checks_see_writes():
    """The two checks above find what they look for (they would catch a stray writer)."""
    from conversations.sql import statements

    assert _orm_writes(WRITE_MODULE), "the AST check found no ORM write in writes.py"
    sql = statements("default")
    for statement in (sql.insert_structure, sql.reserve_branch, sql.delete_turn_usage):
        assert WRITE_SQL.search(statement), statement
    assert not WRITE_SQL.search(sql.items_all)


def test_only_the_write_module_and_the_adapter_import_the_sql():
    importers = set()
    for path in _app_modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                names = {alias.name for alias in node.names}
                if module in ("conversations.sql", "sql") or (
                    module in ("", "conversations") and "sql" in names
                ):
                    importers.add(path)
            elif isinstance(node, ast.Import) and any(
                alias.name == "conversations.sql" for alias in node.names
            ):
                importers.add(path)
    assert importers <= SQL_IMPORTERS, sorted(str(p.relative_to(REPO)) for p in importers)
    assert REPO / "conversations" / "writes.py" in importers


# ---- At run time ------------------------------------------------------------------------------


class _WriteRecorder:
    """An ``execute_wrapper`` noting every SDK-table write and whether writes.py issued it."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, bool]] = []

    def __call__(self, execute, sql, params, many, context):
        if WRITE_SQL.search(sql):
            stack = traceback.extract_stack()
            from_write_module = any(Path(frame.filename) == WRITE_MODULE for frame in stack)
            self.writes.append((" ".join(sql.split())[:90], from_write_module))
        return execute(sql, params, many, context)


@pytest.mark.django_db(transaction=True)
def test_every_sdk_table_write_comes_from_the_write_module():
    recorder = _WriteRecorder()
    # An execute_wrapper sends DjangoSession's statements through Django's cursor too.
    with connection.execute_wrapper(recorder):
        session = DjangoSession(session_id="one-path")

        async def adapter() -> None:
            await session.add_items([user("Hi"), assistant("Hello")])
            await session.add_items([user("Again"), assistant("Sure")])
            await session.store_usage(_usage())
            await session.create_branch_from_turn(2, "alt")
            await session.add_items([user("Other"), assistant("Fine")])
            await session.pop_item()
            await session.switch_to_branch("main")
            await session.delete_branch("alt")
            await session.create_branch_from_turn(2, "keep")
            await session.switch_to_branch("main")

        async_to_sync(adapter)()
        message = AgentMessage.objects.filter(session_id="one-path").order_by("-id").first()
        assert message is not None
        services.message_update(message_id=message.pk, item=assistant("Edited"))
        services.turn_usage_save(
            session_id="one-path",
            branch_id="main",
            user_turn_number=2,
            requests=1,
            input_tokens=3,
            output_tokens=4,
            total_tokens=None,
            input_tokens_details=None,
            output_tokens_details=None,
        )
        row = MessageStructure.objects.filter(session_id="one-path").order_by("-sequence_number")
        services.structure_row_delete(row_id=row.first().pk)
        services.session_duplicate(session_id="one-path", new_session_id="one-path-copy")
        services.branch_rename(session_id="one-path", old="keep", new="kept")
        services.branch_delete(session_id="one-path", branch_id="kept")
        tree = tree_export(session_id="one-path")
        tree["session"]["session_id"] = "one-path-imported"
        tree_import(tree=tree)
        services.structure_rebuild(session_id="one-path-imported")
        services.session_delete(session_id="one-path-copy")
        async_to_sync(session.clear_session)()

    tables = {table for sql, _ in recorder.writes for table in SDK_TABLES if table in sql}
    assert tables == set(SDK_TABLES), tables  # every table was written: the check saw them
    stray = [sql for sql, ok in recorder.writes if not ok]
    assert stray == []
    assert TurnUsage.objects.filter(session_id="one-path-imported").exists()


def _usage():
    from agents.usage import Usage

    return Usage(requests=1, input_tokens=10, output_tokens=5, total_tokens=15)
