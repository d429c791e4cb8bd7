"""Whole conversations in and out of Forkview's database.

- :mod:`.tree`: the JSON session tree (lossless; export, validated import, the report);
- :mod:`.transcripts`: one branch as JSONL items or a Markdown transcript, and
  :func:`export_chunks` (streamed, memory flat in the session's size: the downloads and
  ``export_session``) and :func:`export_text` (one string);
- :mod:`.sdk_file`: SQLite files the Agents SDK wrote, read as trees for ``import_agents_db``.

Imports write through ``conversations.writes.tree_write`` (the one write path).
"""

from __future__ import annotations

from .sdk_file import SDKFile, open_sqlite_readonly, sdk_file_trees
from .transcripts import (
    CONTENT_TYPES,
    EXTENSIONS,
    FORMATS,
    branch_items,
    export_chunks,
    export_text,
    jsonl_export,
    markdown_export,
)
from .tree import (
    TREE_FORMAT,
    TREE_VERSION,
    ImportReport,
    TreeError,
    tree_chunks,
    tree_dumps,
    tree_export,
    tree_import,
)

__all__ = [
    "CONTENT_TYPES",
    "EXTENSIONS",
    "FORMATS",
    "TREE_FORMAT",
    "TREE_VERSION",
    "ImportReport",
    "SDKFile",
    "TreeError",
    "branch_items",
    "export_chunks",
    "export_text",
    "jsonl_export",
    "markdown_export",
    "open_sqlite_readonly",
    "sdk_file_trees",
    "tree_chunks",
    "tree_dumps",
    "tree_export",
    "tree_import",
]
