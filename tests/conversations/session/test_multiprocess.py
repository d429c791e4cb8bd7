"""Several OS processes writing one session at once (SQLite file or PostgreSQL).

Each writer is a real process (``mp_worker``) with its own Django and its own connection to
the test database, released together by a start barrier. Afterwards the rows must show that
nothing was lost or torn: every batch whole and contiguous, sequence numbers unique and
gap-free, turn numbers consistent, branch copies exact, branch ids unique, and no
"database is locked" anywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from conversations.models import AgentMessage, BranchReservation, MessageStructure
from tests.support.databases import database_url
from tests.support.mp_worker import batch_items

REPO = Path(__file__).resolve().parents[3]
WORKERS = 4
BATCHES = 100
WORKER_TIMEOUT = 300

Row = tuple[str, int, int | None, int | None, str, int, Any]  # see structure_rows()


def run_workers(url: str, plan: list[tuple[str, int, int]]) -> list[dict[str, Any]]:
    """Start one writer per ``(session_id, worker, batches)``, release them together.

    Returns their reports in plan order; every writer must exit 0 without a lock error.
    """
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "dashboard.settings"}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    procs: list[tuple[subprocess.Popen[str], Any]] = []
    try:
        for session_id, worker, batches in plan:
            stderr = tempfile.TemporaryFile(mode="w+")
            command = [sys.executable, "-m", "tests.support.mp_worker"]
            proc = subprocess.Popen(
                [*command, str(worker), str(batches), session_id],
                cwd=REPO,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
            procs.append((proc, stderr))
        for proc, _ in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc, _ in procs:  # the barrier: everyone starts writing now
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = []
        for proc, stderr in procs:
            out, _ = proc.communicate(timeout=WORKER_TIMEOUT)
            stderr.seek(0)
            errors = stderr.read()
            assert "database is locked" not in errors
            assert proc.returncode == 0, errors
            reports.append(json.loads(out.strip().splitlines()[-1]))
        return reports
    finally:
        for proc, stderr in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            stderr.close()


def structure_rows(session_id: str) -> list[Row]:
    """(branch, sequence, user turn, branch turn, type, message id, item) in sequence order."""
    return list(
        MessageStructure.objects.filter(session_id=session_id)
        .order_by("sequence_number")
        .values_list(
            "branch_id",
            "sequence_number",
            "user_turn_number",
            "branch_turn_number",
            "message_type",
            "message_id",
            "message__message_data",
        )
    )


def check_history(
    rows: list[Row], reports: list[dict[str, Any]], workers: list[int], batches: int
) -> None:
    """Assert every invariant the concurrent writers must keep (raises AssertionError)."""
    # Sequence numbers: unique and gap-free across all branches of the session.
    sequence = [r[1] for r in rows]
    assert sequence == list(range(1, len(rows) + 1)), "sequence numbers not unique and gap-free"

    # Nothing lost: every item of every batch is on main, once.
    main = [r for r in rows if r[0] == "main"]
    expected = sum(len(batch_items(w, b)) for w in workers for b in range(batches))
    assert len(main) == expected
    assert len({r[5] for r in main}) == expected, "message rows shared or duplicated on main"

    # Every batch whole, in order and contiguous (no other writer's row in between).
    positions: dict[tuple[str, str], list[tuple[int, int, int]]] = defaultdict(list)
    for index, row in enumerate(main):
        worker, batch, pos, size = row[6]["mark"].split("-")
        positions[(worker, batch)].append((index, int(pos[1:]), int(size[1:])))
    assert len(positions) == len(workers) * batches
    for key, entries in positions.items():
        indexes = [e[0] for e in entries]
        size = entries[0][2]
        assert [e[1] for e in entries] == list(range(size)), f"batch {key} torn or reordered"
        assert indexes == list(range(indexes[0], indexes[0] + size)), f"batch {key} interleaved"

    # The writers really overlapped (a serial run switches writer only len(workers) - 1 times).
    batch_writers = [row[6]["mark"].split("-")[0] for row in main if "-p0-" in row[6]["mark"]]
    switches = sum(a != b for a, b in zip(batch_writers, batch_writers[1:], strict=False))
    assert switches >= len(workers), f"writers did not overlap ({switches} switches)"

    # Turn numbers: each user message opens the next turn; both counters agree.
    turn = 0
    for row in main:
        turn += row[4] == "user"
        assert row[2] == turn and row[3] == turn, f"turn numbers wrong at sequence {row[1]}"

    # Branches: ids unique, each a contiguous exact copy of main's turns before its turn.
    created = [b for report in reports for b in report["branches"]]
    ids = [b["branch_id"] for b in created]
    assert len(ids) == len(set(ids)), "branch ids not unique"
    assert {r[0] for r in rows} == {"main", *ids}
    for branch in created:
        copy = [r for r in rows if r[0] == branch["branch_id"]]
        source = [r for r in main if r[3] < branch["turn"]]
        assert copy, f"branch {branch} is empty"
        assert [r[5] for r in copy] == [r[5] for r in source], f"branch {branch} not a prefix"
        assert [(r[2], r[3], r[4]) for r in copy] == [(r[2], r[3], r[4]) for r in source]
        seqs = [r[1] for r in copy]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"branch {branch} interleaved"

    # The named branch everyone raced for: exactly one winner.
    outcomes = [report["contested"] for report in reports]
    assert outcomes.count("won") == 1, outcomes
    assert all(o == "won" or o.startswith("ValueError") for o in outcomes), outcomes


@pytest.mark.django_db(transaction=True)
def test_session_concurrent_writers_lose_nothing() -> None:
    session_id = "mp-session"
    url = database_url(connection.settings_dict)

    reports = run_workers(url, [(session_id, w, BATCHES) for w in range(WORKERS)])

    check_history(structure_rows(session_id), reports, list(range(WORKERS)), BATCHES)
    expected_items = sum(len(batch_items(w, b)) for w in range(WORKERS) for b in range(BATCHES))
    assert AgentMessage.objects.filter(session_id=session_id).count() == expected_items
    branch_ids = {b["branch_id"] for report in reports for b in report["branches"]}
    assert len(branch_ids) >= WORKERS * (BATCHES // 10)
    reserved = set(
        BranchReservation.objects.filter(session_id=session_id).values_list("branch_id", flat=True)
    )
    assert reserved >= {"main", *branch_ids}


@pytest.mark.django_db(transaction=True)
def test_sessions_concurrent_writers_stay_separate() -> None:
    """Two sessions, two writers each, all at once: each session is numbered on its own."""
    url = database_url(connection.settings_dict)
    plan = [("mp-a", 0, 40), ("mp-a", 1, 40), ("mp-b", 2, 40), ("mp-b", 3, 40)]

    reports = run_workers(url, plan)

    for session_id in ("mp-a", "mp-b"):
        mine = [r for (sid, _, _), r in zip(plan, reports, strict=True) if sid == session_id]
        check_history(structure_rows(session_id), mine, [r["worker"] for r in mine], 40)


# ---- the checker itself must be able to fail ----------------------------------------------


def _synthetic_history() -> tuple[list[Row], list[dict[str, Any]]]:
    """A correct history of 2 workers x 4 batches, written one batch after another."""
    rows: list[Row] = []
    seq = turn = message_id = 0
    for batch in range(4):
        for worker in range(2):
            for item in batch_items(worker, batch):
                seq += 1
                message_id += 1
                is_user = item.get("role") == "user"
                turn += is_user
                kind = "user" if is_user else item.get("type", "assistant")
                if item.get("role") == "assistant":
                    kind = "assistant"
                rows.append(("main", seq, turn, turn, kind, message_id, item))
    reports = [
        {"worker": 0, "branches": [], "contested": "won"},
        {"worker": 1, "branches": [], "contested": "ValueError: taken"},
    ]
    return rows, reports


def test_check_history_accepts_a_serial_history() -> None:
    rows, reports = _synthetic_history()
    check_history(rows, reports, workers=[0, 1], batches=4)


def test_check_history_rejects_an_interleaved_batch() -> None:
    rows, reports = _synthetic_history()
    rows[1], rows[4] = rows[4], rows[1]
    rows = [(r[0], index, *r[2:]) for index, r in enumerate(rows, 1)]
    with pytest.raises(AssertionError, match="batch"):
        check_history(rows, reports, workers=[0, 1], batches=4)


def test_check_history_rejects_a_sequence_gap() -> None:
    rows, reports = _synthetic_history()
    rows = [(*r[:1], r[1] + (r[1] > 5), *r[2:]) for r in rows]
    with pytest.raises(AssertionError, match="gap-free"):
        check_history(rows, reports, workers=[0, 1], batches=4)


def test_check_history_rejects_a_lost_item() -> None:
    rows, reports = _synthetic_history()
    del rows[-1]
    with pytest.raises(AssertionError):
        check_history(rows, reports, workers=[0, 1], batches=4)


def test_check_history_rejects_two_contested_winners() -> None:
    rows, reports = _synthetic_history()
    reports[1]["contested"] = "won"
    with pytest.raises(AssertionError):
        check_history(rows, reports, workers=[0, 1], batches=4)
