"""Page-shaped reads for the review UI: each returns frozen dataclasses, never model instances.

Every selector runs a fixed number of queries whatever the size of the session. Unknown
sessions and branches raise :class:`SessionNotFound` / :class:`BranchNotFound` (both
:class:`ReviewError`, a ``LookupError``), never ``Http404``: the views decide what they mean.

Modules: ``sessions`` (the session table, its filters, tool names), ``tree`` (the branch
tree), ``turns`` (turns, the page of turns, the session page), ``usage`` (the charts' series
and their JSON twin), ``search`` (THE message search), ``compare`` (two branches side by
side), ``traces`` (per-turn traces, branch costs, the waterfall's JSON twin),
``annotations`` (the review workflow: annotations by target, score figures, review
status), ``errors``.
"""

from __future__ import annotations

from .annotations import (
    BranchScores,
    Definition,
    Note,
    ReviewState,
    ScoreComparison,
    ScoreStat,
    SessionAnnotations,
    TargetNotes,
    definitions_get,
    session_annotations_get,
)
from .compare import (
    COMPARE_LIMIT,
    BranchCompare,
    CompareCosts,
    CompareRow,
    CompareScores,
    branch_compare_get,
    compare_costs_get,
    compare_scores_get,
)
from .errors import BranchNotFound, ReviewError, SessionNotFound
from .search import CANDIDATE_SCAN, SEARCH_LIMIT, SearchHit, search_hits, search_scan_capped
from .sessions import (
    DEFAULT_SORT,
    SESSIONS_PER_PAGE,
    SORTS,
    SessionListFilters,
    SessionListPage,
    SessionRow,
    session_ids,
    session_list,
    tool_names,
)
from .traces import (
    MAX_SPANS,
    BranchCost,
    SessionTraces,
    TurnSpans,
    TurnTrace,
    session_traces_get,
    turn_spans_get,
)
from .tree import BranchNode, BranchTree, branch_tree_get
from .turns import (
    MAX_TEXT,
    TURN_PAGE_SIZE,
    SessionDetail,
    Switcher,
    ToolCall,
    Turn,
    TurnItem,
    TurnPage,
    TurnUsageView,
    session_detail_get,
    turn_fragment_get,
    turn_page_get,
    turns_get,
)
from .usage import CumulativeLine, UsagePoint, UsageSeries, usage_series_get

__all__ = [
    "CANDIDATE_SCAN",
    "COMPARE_LIMIT",
    "DEFAULT_SORT",
    "MAX_SPANS",
    "MAX_TEXT",
    "SEARCH_LIMIT",
    "SESSIONS_PER_PAGE",
    "SORTS",
    "TURN_PAGE_SIZE",
    "BranchCompare",
    "BranchCost",
    "BranchNode",
    "BranchNotFound",
    "BranchScores",
    "BranchTree",
    "CompareCosts",
    "CompareRow",
    "CompareScores",
    "CumulativeLine",
    "Definition",
    "Note",
    "ReviewError",
    "ReviewState",
    "ScoreComparison",
    "ScoreStat",
    "SearchHit",
    "SessionAnnotations",
    "SessionDetail",
    "SessionListFilters",
    "SessionListPage",
    "SessionNotFound",
    "SessionRow",
    "SessionTraces",
    "Switcher",
    "ToolCall",
    "Turn",
    "TargetNotes",
    "TurnItem",
    "TurnPage",
    "TurnSpans",
    "TurnTrace",
    "TurnUsageView",
    "UsagePoint",
    "UsageSeries",
    "branch_compare_get",
    "branch_tree_get",
    "compare_costs_get",
    "compare_scores_get",
    "definitions_get",
    "search_hits",
    "search_scan_capped",
    "session_annotations_get",
    "session_detail_get",
    "session_ids",
    "session_list",
    "session_traces_get",
    "tool_names",
    "turn_fragment_get",
    "turn_page_get",
    "turn_spans_get",
    "turns_get",
    "usage_series_get",
]
