"""Two branches of a session side by side from their fork point, with word-level diffs."""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import dataclass

from .tree import BranchNode, branch_tree_get
from .turns import Turn, turns_get

__all__ = ["COMPARE_LIMIT", "BranchCompare", "CompareRow", "branch_compare_get"]

#: Turns of each branch compared side by side after the fork.
COMPARE_LIMIT = 60


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

    @property
    def token_delta(self) -> int:
        return self.tokens_b - self.tokens_a


def _diff_html(a: str, b: str) -> tuple[str, str]:
    """Word-level diff of two texts as (left, right) escaped HTML with <del>/<ins> marks."""
    wa, wb = re.split(r"(\s+)", a), re.split(r"(\s+)", b)
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
    tokens_a = tokens_b = 0
    for turn in range(fork, end + 1):
        lt, rt = left.get(turn), right.get(turn)
        lh, rh = _diff_html(lt.assistant_text if lt else "", rt.assistant_text if rt else "")
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
    )
