"""Two branches of a session side by side from their fork point, with word-level diffs.

The diff's work is bounded (issue 12): ``difflib`` is quadratic or worse in the tokens it
compares, so after the common prefix and suffix are set aside a pair of texts gets a word
diff only while ``words(a) x words(b)`` stays within :data:`WORD_DIFF_CELLS` (and the page
within :data:`PAGE_DIFF_CELLS`), else a line diff within :data:`LINE_DIFF_CELLS`, else no
inline diff; the row says which (``CompareRow.diff_mode``) and the page says so.
"""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from conversations.costs import CostTotal, add_totals, describe, format_usd

from .annotations import (
    ScoreComparison,
    SessionAnnotations,
    score_comparison,
    session_annotations_get,
)
from .traces import SessionTraces, TurnTrace, duration_text
from .tree import BranchNode, BranchTree, branch_tree_get
from .turns import Turn, turns_get

__all__ = [
    "COMPARE_LIMIT",
    "LINE_DIFF_CELLS",
    "PAGE_DIFF_CELLS",
    "WORD_DIFF_CELLS",
    "BranchCompare",
    "CompareCosts",
    "CompareRow",
    "CompareScores",
    "branch_compare_get",
    "compare_costs_get",
    "compare_scores_get",
]

#: Turns of each branch compared side by side after the fork.
COMPARE_LIMIT = 60

#: Most word pairs (differing words left x right) one word diff may weigh.
WORD_DIFF_CELLS = 250_000
#: Most line pairs one line diff (the fallback) may weigh.
LINE_DIFF_CELLS = 40_000
#: Most cells all the diffs of one page may weigh together; later rows fall back.
PAGE_DIFF_CELLS = 1_000_000

#: ``CompareRow.diff_mode`` values.
WORDS, LINES, NONE = "words", "lines", "none"

_WORD = re.compile(r"\S+\s*|\s+")


@dataclass(frozen=True, slots=True)
class CompareRow:
    turn: int
    left: Turn | None
    right: Turn | None
    left_diff_html: str
    right_diff_html: str
    tools_left: tuple[str, ...]
    tools_right: tuple[str, ...]
    token_delta: int | None  # right - left, when both have usage
    diff_mode: str = WORDS  # words, lines (texts too big for a word diff) or none

    @property
    def tools_differ(self) -> bool:
        return self.tools_left != self.tools_right

    @property
    def text_differs(self) -> bool:
        return (self.left.assistant_text if self.left else "") != (
            self.right.assistant_text if self.right else ""
        )


@dataclass(frozen=True)
class BranchCompare:
    session_id: str
    a: BranchNode
    b: BranchNode
    fork_turn: int
    rows: tuple[CompareRow, ...]
    tokens_a: int
    tokens_b: int
    truncated: bool
    branches: tuple[str, ...]
    tree: BranchTree | None = field(default=None, repr=False, compare=False)  # for the traces

    @property
    def coarse_rows(self) -> tuple[int, ...]:
        """Turns whose texts were too big for a word diff (line diff or none)."""
        return tuple(row.turn for row in self.rows if row.diff_mode != WORDS)

    @property
    def undiffed_rows(self) -> tuple[int, ...]:
        """Turns shown without inline marks (too big even for a line diff)."""
        return tuple(row.turn for row in self.rows if row.diff_mode == NONE)

    @property
    def token_delta(self) -> int:
        return self.tokens_b - self.tokens_a


def _affixes(wa: list[str], wb: list[str]) -> tuple[int, int]:
    """Lengths of the common prefix and (of the rest) the common suffix: linear."""
    n = min(len(wa), len(wb))
    head = 0
    while head < n and wa[head] == wb[head]:
        head += 1
    tail = 0
    while tail < n - head and wa[-1 - tail] == wb[-1 - tail]:
        tail += 1
    return head, tail


def _marked(wa: list[str], wb: list[str]) -> tuple[str, str]:
    """``difflib`` over two token lists as (left, right) escaped HTML with <del>/<ins>."""
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, wa, wb, autojunk=False).get_opcodes():
        sa, sb = html.escape("".join(wa[i1:i2])), html.escape("".join(wb[j1:j2]))
        if op == "equal":
            left.append(sa)
            right.append(sb)
        else:
            if sa:
                left.append(f"<del>{sa}</del>")
            if sb:
                right.append(f"<ins>{sb}</ins>")
    return "".join(left), "".join(right)


def _diff_html(a: str, b: str, budget: list[int]) -> tuple[str, str, str]:
    """Two texts as (left, right, mode): escaped HTML with <del>/<ins> marks.

    A word diff when it fits :data:`WORD_DIFF_CELLS` and ``budget`` (the page's cells left,
    decremented), else a line diff within :data:`LINE_DIFF_CELLS`, else no marks (``none``).
    """
    if a == b:
        return html.escape(a), html.escape(b), WORDS
    for mode, tokens, cap in (
        (WORDS, _WORD.findall, WORD_DIFF_CELLS),
        (LINES, None, LINE_DIFF_CELLS),
    ):
        wa = tokens(a) if tokens else a.splitlines(keepends=True)
        wb = tokens(b) if tokens else b.splitlines(keepends=True)
        head, tail = _affixes(wa, wb)
        mid_a, mid_b = wa[head : len(wa) - tail], wb[head : len(wb) - tail]
        cells = max(len(mid_a), 1) * max(len(mid_b), 1)
        if cells <= cap and cells <= budget[0]:
            budget[0] -= cells
            ml, mr = _marked(mid_a, mid_b)
            prefix = html.escape("".join(wa[:head]))
            suffix = html.escape("".join(wa[len(wa) - tail :]))
            return prefix + ml + suffix, prefix + mr + suffix, mode
    return html.escape(a), html.escape(b), NONE


def branch_compare_get(
    *, session_id: str, a: str, b: str, limit: int = COMPARE_LIMIT
) -> BranchCompare:
    """Two branches aligned turn by turn from their fork: about 7 queries.

    Raises:
        SessionNotFound: The session has no rows.
        BranchNotFound: ``a`` or ``b`` has no rows.
    """
    tree = branch_tree_get(session_id=session_id)
    na, nb = tree.node(a), tree.node(b)
    fork = tree.common_prefix(a, b) + 1
    last = max(na.turns, nb.turns)
    end = min(last, fork + limit - 1)
    left = {
        t.number: t for t in turns_get(tree=tree, branch_id=a, first=fork, last=min(end, na.turns))
    }
    right = {
        t.number: t for t in turns_get(tree=tree, branch_id=b, first=fork, last=min(end, nb.turns))
    }
    rows = []
    budget = [PAGE_DIFF_CELLS]
    tokens_a = tokens_b = 0
    for turn in range(fork, end + 1):
        lt, rt = left.get(turn), right.get(turn)
        lh, rh, mode = _diff_html(
            lt.assistant_text if lt else "", rt.assistant_text if rt else "", budget
        )
        if lt and lt.usage:
            tokens_a += lt.usage.total_tokens
        if rt and rt.usage:
            tokens_b += rt.usage.total_tokens
        delta = (
            rt.usage.total_tokens - lt.usage.total_tokens
            if lt and rt and lt.usage and rt.usage
            else None
        )
        rows.append(
            CompareRow(
                turn=turn,
                left=lt,
                right=rt,
                left_diff_html=lh,
                right_diff_html=rh,
                tools_left=lt.tool_sequence if lt else (),
                tools_right=rt.tool_sequence if rt else (),
                token_delta=delta,
                diff_mode=mode,
            )
        )
    return BranchCompare(
        session_id=session_id,
        a=na,
        b=nb,
        fork_turn=fork,
        rows=tuple(rows),
        tokens_a=tokens_a,
        tokens_b=tokens_b,
        truncated=end < last,
        branches=tree.order,
        tree=tree,
    )


@dataclass(frozen=True)
class CompareScores:
    """The review figures of a comparison: each scored definition on both branches (their
    branch-level scores and the scores of their compared turns, from the fork on) and which
    branch scored better: the one ahead on more definitions (``""``: even, or nothing to
    compare). ``ann`` holds the two branches' annotations (the rows' per-turn figures)."""

    ann: SessionAnnotations
    comparisons: tuple[ScoreComparison, ...]

    @property
    def wins_a(self) -> int:
        return sum(1 for c in self.comparisons if c.better == "a")

    @property
    def wins_b(self) -> int:
        return sum(1 for c in self.comparisons if c.better == "b")

    @property
    def better(self) -> str:
        if self.wins_a == self.wins_b:
            return ""
        return "a" if self.wins_a > self.wins_b else "b"


def compare_scores_get(*, compare: BranchCompare, user: Any = None) -> CompareScores:
    """The scores of the two compared branches (3 queries, whatever their number)."""
    a, b = compare.a.branch_id, compare.b.branch_id
    ann = session_annotations_get(session_id=compare.session_id, user=user, branches={a, b})
    return CompareScores(
        ann=ann, comparisons=score_comparison(ann, a, b, from_turn=compare.fork_turn)
    )


# ---- Cost and latency of the compared turns (issue 16) ----------------------------------------


@dataclass(frozen=True)
class CompareCosts:
    """Cost and wall time of each side over the compared turns, and each row's traces."""

    rows: tuple[tuple[CompareRow, TurnTrace | None, TurnTrace | None], ...]
    cost_a: CostTotal
    cost_b: CostTotal
    latency_a: float  # ms, summed over the traced turns
    latency_b: float

    @property
    def text_a(self) -> str:
        return describe(self.cost_a)

    @property
    def text_b(self) -> str:
        return describe(self.cost_b)

    @property
    def latency_a_text(self) -> str:
        return duration_text(self.latency_a)

    @property
    def latency_b_text(self) -> str:
        return duration_text(self.latency_b)

    @property
    def delta_usd(self) -> Decimal | None:
        """Right − left, when both sides have a price for every traced call."""
        if not (self.cost_a.priced and self.cost_b.priced):
            return None
        if self.cost_a.unpriced or self.cost_b.unpriced:
            return None
        return self.cost_b.usd - self.cost_a.usd

    @property
    def delta_text(self) -> str:
        delta = self.delta_usd
        if delta is None:
            return ""
        text = ("+" if delta > 0 else "") + format_usd(delta)
        if self.cost_a.usd:
            text += f", {delta / self.cost_a.usd * 100:+.0f}%"
        return text

    @property
    def delta_sign(self) -> int:
        delta = self.delta_usd
        return 0 if not delta else (1 if delta > 0 else -1)


def compare_costs_get(*, compare: BranchCompare, traces: SessionTraces) -> CompareCosts:
    """Each compared turn's trace figures and the sides' totals (no query: ``traces`` holds
    the session's traced turns)."""
    rows = tuple(
        (
            row,
            traces.turn(compare.a.branch_id, row.turn) if row.left else None,
            traces.turn(compare.b.branch_id, row.turn) if row.right else None,
        )
        for row in compare.rows
    )
    left = [t for _, t, _ in rows if t is not None and (t.traced or t.cost.count)]
    right = [t for _, _, t in rows if t is not None and (t.traced or t.cost.count)]
    return CompareCosts(
        rows=rows,
        cost_a=add_totals(t.cost for t in left),
        cost_b=add_totals(t.cost for t in right),
        latency_a=sum(t.latency_ms or 0.0 for t in left),
        latency_b=sum(t.latency_ms or 0.0 for t in right),
    )
