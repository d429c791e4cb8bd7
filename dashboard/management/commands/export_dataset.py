"""``manage.py export_dataset``: the selected sessions as a dataset (fine-tuning JSONL in the
OpenAI chat format, evaluation JSONL, or a CSV of annotations).

The session list's filters select the sessions (``--filter tag=hallucination`` and alike,
the list's query parameters), ``--branch`` picks each session's branch. Written as it is
read (``exchange.dataset_chunks``: sessions in batches, one snapshot), so memory stays flat
whatever the number of sessions; progress (sessions done / selected) and a summary of what
was left out go to stderr.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS

from conversations.exchange import (
    DATASET_FORMATS,
    BranchChoice,
    DatasetError,
    DatasetReport,
    dataset_chunks,
)
from dashboard.review.datasets import list_selection


class Command(BaseCommand):
    help = (
        "Export the selected sessions as a dataset: finetune = OpenAI chat fine-tuning JSONL "
        "(one line per turn), eval = evaluation JSONL (input, reference answer, scores and "
        "comments per turn), annotations = a CSV of every annotation."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--format", choices=DATASET_FORMATS, default="finetune")
        parser.add_argument(
            "--branch",
            default="preferred",
            help="preferred (default: the preferred branch, else main), best (with --score), "
            "or a branch name.",
        )
        parser.add_argument("--score", default="", help="The score definition for --branch best.")
        parser.add_argument(
            "--filter",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="A session list filter (tool, branched=1, from, to, score, score_min, "
            "score_max, tag, status, annotator, commented=1); repeatable.",
        )
        parser.add_argument("--output", "-o", help="Write to this file (default: stdout).")
        parser.add_argument("--quiet", action="store_true", help="No progress on stderr.")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args: Any, **options: Any) -> None:
        params: dict[str, str] = {}
        for pair in options["filter"]:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise CommandError(f"A filter is KEY=VALUE, not {pair!r}.")
            params[key] = value
        report = DatasetReport()
        quiet = options["quiet"]

        def progress(done: int, total: int) -> None:
            if not quiet:
                self.stderr.write(f"{done}/{total} sessions", ending="\n")
                self.stderr.flush()

        try:
            choice = BranchChoice.parse(options["branch"], definition=options["score"])
            chunks = dataset_chunks(
                fmt=options["format"],
                branch=choice,
                sessions=list_selection(params),
                using=options["database"],
                report=report,
                progress=progress,
            )
        except DatasetError as exc:
            raise CommandError(str(exc)) from exc
        path = options["output"]
        if not path:
            try:
                for chunk in chunks:
                    self.stdout.write(chunk, ending="")
                self.stdout.flush()
            except BrokenPipeError:  # | head: the reader has what it wanted
                chunks.close()
                return
        else:
            try:
                with open(path, "w", encoding="utf-8", newline="") as handle:
                    handle.writelines(chunks)
            except BaseException:
                if os.path.isfile(path):  # no half file behind
                    os.unlink(path)
                raise
        if not quiet:
            self.stderr.write(report.summary())
