"""Whole conversations in and out of Forkview's database.

- :mod:`.tree`: the JSON session tree (lossless; export, validated import, the report);
- :mod:`.transcripts`: one branch as JSONL items or a Markdown transcript, and
  :func:`export_chunks` (streamed, memory flat in the session's size: the downloads and
  ``export_session``) and :func:`export_text` (one string);
- :mod:`.datasets`: many sessions as a dataset (fine-tuning JSONL in the OpenAI chat format,
  evaluation JSONL, a CSV of annotations), streamed in batches: ``export_dataset`` and the
  dataset download;
- :mod:`.sdk_file`: SQLite files the Agents SDK wrote, read as trees for ``import_agents_db``.

Imports write through ``conversations.writes.tree_write`` (the one write path).
"""

from __future__ import annotations

from .datasets import (
    DATASET_FORMATS,
    BranchChoice,
    DatasetError,
    DatasetReport,
    dataset_chunks,
    finetune_problems,
)
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
    "DATASET_FORMATS",
    "EXTENSIONS",
    "FORMATS",
    "TREE_FORMAT",
    "TREE_VERSION",
    "BranchChoice",
    "DatasetError",
    "DatasetReport",
    "ImportReport",
    "SDKFile",
    "TreeError",
    "branch_items",
    "dataset_chunks",
    "export_chunks",
    "export_text",
    "finetune_problems",
    "jsonl_export",
    "markdown_export",
    "open_sqlite_readonly",
    "sdk_file_trees",
    "tree_chunks",
    "tree_dumps",
    "tree_export",
    "tree_import",
]
