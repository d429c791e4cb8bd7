"""Smoke tests: ``bench/session_bench.py``, ``chat_bench.py``, ``compare_bench.py``,
``load_bench.py`` and ``tracing_bench.py`` run (``--quick``) and print their tables;
``scale_bench.py`` a small run.

Speed targets live in the benchmark's output only; nothing here asserts a timing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run_quick(script: str, workdir: Path) -> str:
    """Run ``bench/<script> --quick`` on SQLite in ``workdir``; return what it printed."""
    env = {k: v for k, v in os.environ.items() if k != "BENCH_DATABASE_URL"}
    proc = subprocess.run(
        [sys.executable, f"bench/{script}", "--quick", "--workdir", str(workdir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def _targets(out: str) -> tuple[int, int]:
    """(met, total) from the ``== Targets ==`` section, checked against its own rows.

    The count line must agree with the verdict rows above it, and there must be targets: a
    run that checked nothing, or miscounted, fails. Whether a speed target is met is the
    benchmark's business (a quick run on a busy machine may miss some), not this test's.
    """
    section = out.split("== Targets ==", 1)[1]
    (met, total), *_ = [
        (int(a), int(b)) for a, b in re.findall(r"^(\d+)/(\d+) targets met$", section, re.M)
    ]
    rows = re.findall(r"^(PASS|FAIL)  \S", section.split(f"{met}/{total} targets met")[0], re.M)
    assert total > 0 and len(rows) == total, (total, rows)
    assert 0 <= met <= total
    return met, total


def test_session_bench_quick_prints_tables(tmp_path: Path) -> None:
    out = _run_quick("session_bench.py", tmp_path)
    assert "== Ops on a 400-item session" in out
    for op in (
        "append 1 item",
        "add 4-item turn",
        "get_items(limit=20)",
        "store_run_usage",
        "create_branch_from_turn(",
        "list_branches",
        "get_conversation_turns",
        "get_turn_usage()",
    ):
        assert op in out, op
    assert "== Scaling: DjangoSession (SQLite)" in out
    _met, total = _targets(out)
    assert total >= 10, total
    assert "USING INDEX idx_structure_branch_seq" in out


def test_chat_bench_quick_prints_tables(tmp_path: Path) -> None:
    out = _run_quick("chat_bench.py", tmp_path)
    assert "== 1. Chat path overhead per turn" in out
    for row in ("text reply", "tool call + reply", "time to first delta", "turn duration"):
        assert row in out, row
    assert "concurrent chats on one daphne process" in out
    assert "-- storage check after the run" in out
    met, total = _targets(out)
    assert total >= 5, total


def test_compare_bench_quick_prints_tables(tmp_path: Path) -> None:
    out = _run_quick("compare_bench.py", tmp_path)
    assert "== Bounded pages, server time" in out
    assert "compare: 2 turns x 20,000 unique chars" in out
    assert "fallback announced" in out  # the coarser diff is said on the page
    _met, total = _targets(out)
    assert total >= 5, total


def test_load_bench_quick_prints_tables(tmp_path: Path) -> None:
    out = _run_quick("load_bench.py", tmp_path)
    assert "== Load ==" in out and "usage.json p50/p95/p99 ms" in out
    assert "every turn stored once" in out
    _met, total = _targets(out)
    assert total >= 2, total


def test_scale_bench_small_run_checks_its_data_and_prints_the_table(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BENCH_DATABASE_URL"}
    proc = subprocess.run(
        [sys.executable, "bench/scale_bench.py", "--small", "40", "--large", "120"]
        + ["--requests", "1", "--workdir", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    out = proc.stdout
    # The bulk-built rows were checked against DjangoSession's before anything was timed.
    assert "every column equal (ids and timestamps aside), and the SDK reads agree: OK" in out
    assert "== Review pages, server time" in out
    for page in ("list, default sort", "sort -tokens", "search rare word", "usage.json"):
        assert page in out, page
    assert out.count("count exact") >= 20  # the list's counts agree with the generator
    _met, total = _targets(out)
    assert total >= 25, total


def test_tracing_bench_quick_prints_tables(tmp_path: Path) -> None:
    out = _run_quick("tracing_bench.py", tmp_path)
    assert "== Tracing overhead per Runner.run" in out
    assert "every forkview run's trace stored" in out
    _met, total = _targets(out)
    assert total >= 3, total


def test_insights_bench_quick_prints_tables(tmp_path: Path) -> None:
    out = _run_quick("insights_bench.py", tmp_path)
    assert "== /insights/: page views over 30 / 90 / 365 days" in out
    _met, total = _targets(out)
    assert total >= 2, total
