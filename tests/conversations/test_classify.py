"""``conversations.classify`` against the SDK's own labelling methods, item by item.

The oracle is ``AdvancedSQLiteSession._classify_message_type``, ``_extract_tool_name`` and
``_is_user_message`` (and the module's ``_content_preview``), called on a real instance.
No database.
"""

from __future__ import annotations

from collections import OrderedDict
from types import MappingProxyType, SimpleNamespace

import pytest
from agents.extensions.memory import AdvancedSQLiteSession
from agents.extensions.memory.advanced_sqlite_session import _content_preview

from conversations import classify
from tests.support.sdk_harness import OTHER_ITEMS, TOOL_ITEMS, assistant, reasoning, user

TOOL_TYPES = [
    "function_call",
    "function_call_output",
    "mcp_call",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_list_tools",
    "computer_call",
    "computer_call_output",
    "file_search_call",
    "web_search_call",
    "code_interpreter_call",
    "shell_call",
    "shell_call_output",
    "apply_patch_call",
    "apply_patch_call_output",
    "tool_search_call",
    "tool_search_output",
    "custom_tool_call",
    "custom_tool_call_output",
    "local_shell_call",
    "local_shell_call_output",
    "image_generation_call",
    "tool_call",
    "reasoning",
    "message",
    "item_reference",
    "compaction",
]

# Values for the keys that steer the rules: present with each of these, or absent (...).
NAMES = [..., None, "", "search", 0, 5, False, "a.b", "ünï"]
LABELS = [..., None, "", "github", 0, 3]
NAMESPACES = [..., None, "", "crm", "search", 7]
ROLES = [..., None, "", "user", "assistant", "system", "developer", "tool", "USER"]


def _item(**fields) -> dict:
    return {k: v for k, v in fields.items() if v is not ...}


def corpus() -> list:
    items: list = [*TOOL_ITEMS, *OTHER_ITEMS, user("hi"), assistant("a"), reasoning()]
    for item_type in [*TOOL_TYPES, ..., None, "", 0, 1, True, "Function_Call"]:
        for name in NAMES:
            for label in LABELS:
                items.append(_item(type=item_type, name=name, server_label=label))
            for namespace in NAMESPACES:
                items.append(_item(type=item_type, name=name, namespace=namespace))
        for role in ROLES:
            items.append(_item(type=item_type, role=role, content="x"))
            items.append(_item(type=item_type, role=role, name="tool", server_label="srv"))
    items += [
        OrderedDict(role="user", content="ordered dict"),
        MappingProxyType({"role": "user", "content": "mapping, not a dict"}),
        SimpleNamespace(role="user", type="function_call", name="attr"),
        ("role", "user"),
        "user",
        b"bytes",
        {"role": ["user"]},
        {"type": ["function_call"]},
        {"type": {"nested": 1}, "name": {"n": 1}},
        {"type": "function_call", "name": "x", "namespace": "x"},
        {"type": "function_call", "name": "x", "namespace": "X"},
        {"type": "mcp_call", "server_label": "s", "name": "n", "namespace": "ns"},
        {"type": "shell_call", "name": "named_shell"},
        {"type": "tool_search_call", "name": "named_search", "server_label": "s"},
        {"type": "mcp_approval_request", "server_label": None, "name": "only-name"},
    ]
    return items


CORPUS = corpus()


def outcome(function, item):
    """A value, or the type of what it raised (an unhashable ``type`` raises in both)."""
    try:
        return ("returned", function(item), type(function(item)))
    except Exception as exc:
        return ("raised", type(exc))


@pytest.fixture(scope="module")
def sdk(tmp_path_factory):
    session = AdvancedSQLiteSession(
        session_id="classify",
        db_path=tmp_path_factory.mktemp("classify") / "sdk.sqlite3",
        create_tables=True,
    )
    yield session
    session.close()


def test_classify_corpus_is_broad():
    assert len(CORPUS) > 1500
    assert len({repr(i) for i in CORPUS}) > 1200


@pytest.mark.parametrize(
    "ours, theirs",
    [
        ("message_type", "_classify_message_type"),
        ("tool_name", "_extract_tool_name"),
        ("is_user_message", "_is_user_message"),
    ],
)
def test_classify_matches_sdk_over_corpus(sdk, ours, theirs):
    """Same value of the same type (``"5"`` is not ``5``), or the same exception type."""
    mismatches = [
        (item, outcome(getattr(sdk, theirs), item), outcome(getattr(classify, ours), item))
        for item in CORPUS
        if outcome(getattr(sdk, theirs), item) != outcome(getattr(classify, ours), item)
    ]
    assert mismatches == []


def test_classify_label_bundles_the_three(sdk):
    for item in CORPUS:
        expected = [
            outcome(f, item)
            for f in (sdk._classify_message_type, sdk._extract_tool_name, sdk._is_user_message)
        ]
        if any(e[0] == "raised" for e in expected):
            with pytest.raises(TypeError):
                classify.label(item)
            continue
        assert classify.label(item) == classify.ItemLabel(*(e[1] for e in expected)), item


def test_classify_labels_every_corpus_kind():
    """The corpus reaches every rule: each type, qualified names, label-only, None."""
    names = {outcome(classify.tool_name, i)[1] for i in CORPUS}
    assert {None, "", "github.search", "crm.search", "search", "github", "tool_search"} <= names
    assert {"computer_call", "shell_call", "apply_patch_call", "5", "0"} <= names
    types = {outcome(classify.message_type, i)[1] for i in CORPUS}
    assert {"user", "assistant", "other", "message", "1", "True", "mcp_call"} <= types


@pytest.mark.parametrize("item", TOOL_ITEMS + OTHER_ITEMS, ids=repr)
def test_classify_each_fixture_item(sdk, item):
    assert classify.message_type(item) == sdk._classify_message_type(item)
    assert classify.tool_name(item) == sdk._extract_tool_name(item)
    assert classify.is_user_message(item) == sdk._is_user_message(item)


PREVIEW_CONTENTS = [
    "",
    "short",
    "x" * 99,
    "x" * 100,
    "x" * 101,
    "é" * 150,
    "😀" * 120,
    [{"type": "input_text", "text": "a"}],
    [{"type": "input_text", "text": "ü" * 200}],
    [{"text": "b", "type": "input_text"}],
    [],
    {"k": "v"},
    None,
    5,
    ["plain", "strings"],
]


@pytest.mark.parametrize("content", PREVIEW_CONTENTS, ids=repr)
@pytest.mark.parametrize("max_length", [None, 0, 1, 50, 100])
def test_classify_content_preview_matches_sdk(content, max_length):
    assert classify.content_preview(content, max_length) == _content_preview(content, max_length)
