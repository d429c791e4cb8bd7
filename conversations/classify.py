"""How an item is labelled in ``message_structure``: the one place that decides it.

The rules are the SDK's (``AdvancedSQLiteSession._classify_message_type``,
``_extract_tool_name`` and ``_is_user_message`` in openai-agents 0.24), so rows written by
Forkview and by the SDK read the same. ``DjangoSession``, the admin and the importers all
call these functions; nothing else derives ``message_type`` or ``tool_name``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agents._tool_identity import is_reserved_synthetic_tool_namespace, tool_qualified_name

# Tool types whose items carry no ``name``: the type itself names the tool.
_NAMELESS_TOOL_TYPES = frozenset(
    {
        "computer_call",
        "file_search_call",
        "web_search_call",
        "code_interpreter_call",
        "shell_call",
        "apply_patch_call",
    }
)
_TOOL_SEARCH_TYPES = frozenset({"tool_search_call", "tool_search_output"})
_MCP_TYPES = frozenset({"mcp_call", "mcp_approval_request"})

#: ``message_type`` values that count as one tool call in ``get_tool_usage``.
TOOL_CALL_TYPES = (
    "tool_call",
    "function_call",
    "computer_call",
    "file_search_call",
    "web_search_call",
    "code_interpreter_call",
    "tool_search_call",
    "custom_tool_call",
    "mcp_call",
    "mcp_approval_request",
    "shell_call",
    "apply_patch_call",
)
#: Tool calls whose ``tool_name`` falls back to the type when the item yields none.
TYPE_NAMED_CALL_TYPES = ("shell_call", "apply_patch_call")


@dataclass(frozen=True, slots=True)
class ItemLabel:
    """What ``message_structure`` records about one item."""

    message_type: str
    tool_name: str | None
    is_user: bool


def message_type(item: Any) -> str:
    """Role wins over type: ``user``/``assistant``, else the item's ``type``, else ``other``."""
    if isinstance(item, dict):
        role = item.get("role")
        if role == "user":
            return "user"
        if role == "assistant":
            return "assistant"
        if item.get("type"):
            return str(item.get("type"))
    return "other"


def tool_name(item: Any) -> str | None:
    """The tool an item calls or answers, qualified the way the SDK qualifies it."""
    if not isinstance(item, dict):
        return None
    item_type = item.get("type")
    if item_type in _MCP_TYPES and "server_label" in item:
        label, name = item.get("server_label"), item.get("name")
        if name and label:
            return f"{label}.{name}"
        if label:
            return str(label)
        if name:
            return str(name)
        return None
    if item_type in _TOOL_SEARCH_TYPES:
        return "tool_search"
    if item_type in _NAMELESS_TOOL_TYPES:
        return str(item_type)
    if "name" in item:
        name = item.get("name")
        if name is None:
            return None
        namespace = item.get("namespace")
        name_str = str(name)
        namespace_str = str(namespace) if namespace is not None else None
        if is_reserved_synthetic_tool_namespace(name_str, namespace_str):
            return name_str
        return tool_qualified_name(name_str, namespace_str) or name_str
    return None


def is_user_message(item: Any) -> bool:
    """Only a dict with ``role == "user"`` opens a new user turn."""
    return isinstance(item, dict) and item.get("role") == "user"


def label(item: Any) -> ItemLabel:
    """All three labels of one item."""
    return ItemLabel(message_type(item), tool_name(item), is_user_message(item))


def content_preview(content: Any, max_length: int | None = None) -> str:
    """The SDK's preview of a user message's ``content`` (str as is, lists JSON-dumped)."""
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    if max_length is not None and len(text) > max_length:
        return text[:max_length] + "..."
    return text
