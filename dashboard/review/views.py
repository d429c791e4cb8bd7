"""Review pages: thin views, one selector each; every page needs login + view permission.

Selectors raise ``ReviewError`` (``SessionNotFound``, ``BranchNotFound``) for what is not
there; :func:`_not_found_as_404` turns it into the 404 page.

Stored text is shown display-safe (``conversations.items.display_text``: lone surrogates, NUL
and control characters as U+FFFD): every page goes through :func:`_render` and every JSON twin
through ``display_value``, the one place each, so no stored byte can fail a response.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from conversations import services
from conversations.items import display_text, display_value
from conversations.models import MAIN_BRANCH
from conversations.permissions import CHAT, PREFER, preferrer_required, reviewer_required
from dashboard.links import chat_url, compare_url, session_url

from . import selectors

_P = ParamSpec("_P")
_R = TypeVar("_R", bound=HttpResponse)


def _not_found_as_404(view: Callable[_P, _R]) -> Callable[_P, _R]:
    """An unknown session or branch (a selector's ``ReviewError``) is a 404."""

    @functools.wraps(view)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return view(*args, **kwargs)
        except selectors.ReviewError as exc:
            raise Http404(str(exc)) from exc

    return wrapper


def render(request: HttpRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    """``django.shortcuts.render`` with the page display-safe (see the module docstring).

    A no-op scan for ordinary pages (one regex search over the text).
    """
    return HttpResponse(display_text(render_to_string(template, context, request)))


def _chat_url_for(request: HttpRequest, session_id: str, branch_id: str) -> str | None:
    """The branch's chat page, for users who may chat ("Continue", "Fork from here")."""
    return chat_url(session_id, branch_id) if request.user.has_perm(CHAT) else None


def _int(value: str | None, default: int | None = None) -> int | None:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


# Session list -----------------------------------------------------------------------------


@require_GET
@reviewer_required
def home(request: HttpRequest) -> HttpResponse:
    """The session table (sortable, filtered, with the review filters and columns) and, with
    ``q``, full-text message hits."""
    filters = selectors.SessionListFilters.from_query(request.GET)
    query = request.GET.get("q", "").strip()
    within = selectors.session_ids(filters)  # the hits honour the list's filters
    hits = selectors.search_hits(query=query, within=within) if query else ()
    context: dict[str, Any] = {
        "listing": selectors.session_list(
            filters=filters,
            sort=request.GET.get("sort", selectors.DEFAULT_SORT),
            page=_int(request.GET.get("page"), 1) or 1,
        ),
        "filters": filters,
        "annotators": selectors.sessions.annotator_names(filters.annotator),
        "statuses": selectors.sessions.REVIEW_STATUSES,
        "dataset_params": [
            (key, value)
            for key, value in request.GET.items()
            if key not in ("q", "page", "sort") and value
        ],
        "query": query,
        "hits": hits,
        "search_filtered": within is not None,
        # SQLite reads the newest CANDIDATE_SCAN matches before the filters: say so when
        # that may have hidden older hits.
        "search_capped": bool(query)
        and len(hits) < selectors.SEARCH_LIMIT
        and selectors.search_scan_capped(query=query, within=within),
        "candidate_scan": selectors.search.CANDIDATE_SCAN,
    }
    return render(request, "dashboard/session_list.html", context)


# Session detail ---------------------------------------------------------------------------


@require_GET
@reviewer_required
@_not_found_as_404
def session_detail(request: HttpRequest, session_id: str) -> HttpResponse:
    """One branch turn by turn, with the branch tree, switchers and token charts.

    Without ``?branch=`` the session's preferred branch opens (``main`` if none is marked).
    """
    detail = selectors.session_detail_get(
        session_id=session_id,
        branch_id=request.GET.get("branch") or None,
        start=_int(request.GET.get("start")),
        turn=_int(request.GET.get("turn")),
    )
    branch_id = detail.branch.branch_id
    other = detail.branch.parent_id or next((b for b in detail.tree.order if b != branch_id), None)
    # Traces: per-turn figures and each branch's cost (2 queries).
    traces = selectors.session_traces_get(tree=detail.tree)
    context = {
        "detail": detail,
        "turn_rows": _turn_rows(traces, detail.page),
        "branch_costs": traces.branch_costs(),
        "session_cost": traces.session_cost_text,
        "trace_url": reverse("session_trace", kwargs={"session_id": session_id}),
        "chat_url": _chat_url_for(request, session_id, branch_id),
        "compare_url": compare_url(session_id, other, branch_id) if other else None,
        "can_prefer": request.user.has_perm(PREFER),
        # The review workflow: annotations by target, figures, status (3-4 queries).
        "ann": selectors.session_annotations_get(
            session_id=session_id, user=request.user, with_assignees=True
        ),
        "queue": request.GET.get("queue") == "1",
    }
    return render(request, "dashboard/session_detail.html", context)


@require_POST
@reviewer_required
@preferrer_required
def session_prefer(request: HttpRequest, session_id: str) -> HttpResponse:
    """Mark (``branch=<id>``) or clear (``clear=1``) the branch the session opens on.

    Answers with a redirect to that branch's page (303, so a reload does not re-post);
    a branch without rows in the session (or an unknown session) is a 404.
    """
    branch_id = request.POST.get("branch", "")
    clear = request.POST.get("clear") == "1"
    if not clear and not branch_id:
        return HttpResponseBadRequest("Which branch? Send branch=<id>, or clear=1.")
    try:
        services.branch_prefer(
            session_id=session_id, branch_id=None if clear else branch_id, user=request.user
        )
    except services.ServiceError as exc:
        raise Http404(str(exc)) from exc
    target = session_url(session_id, branch_id or MAIN_BRANCH)
    return HttpResponseRedirect(target, status=303)


@require_GET
@reviewer_required
@_not_found_as_404
def session_turns(request: HttpRequest, session_id: str) -> HttpResponse:
    """Turns ``start..end`` as an HTML fragment ("load earlier" without a page reload)."""
    branch_id = request.GET.get("branch") or MAIN_BRANCH
    page = selectors.turn_fragment_get(
        session_id=session_id,
        branch_id=branch_id,
        start=_int(request.GET.get("start"), 1) or 1,
        end=_int(request.GET.get("end"), 1) or 1,
    )
    traces = selectors.session_traces_get(tree=selectors.branch_tree_get(session_id=session_id))
    context = {
        "page": page,
        "turn_rows": _turn_rows(traces, page),
        "trace_url": reverse("session_trace", kwargs={"session_id": session_id}),
        "fork_base": _chat_url_for(request, session_id, branch_id),
    }
    return render(request, "dashboard/partials/_turn_list.html", context)


@require_GET
@reviewer_required
@_not_found_as_404
def session_usage(request: HttpRequest, session_id: str) -> JsonResponse:
    """The charts' data: per-turn usage of a branch + cumulative lines of all branches."""
    series = selectors.usage_series_get(
        session_id=session_id, branch_id=request.GET.get("branch") or MAIN_BRANCH
    )
    return JsonResponse(display_value(series.as_json()), json_dumps_params={"ensure_ascii": False})


@require_GET
@reviewer_required
@_not_found_as_404
def session_trace(request: HttpRequest, session_id: str) -> HttpResponse:
    """The spans of one turn's trace(s), for its waterfall (``?branch=<id>&turn=<n>``)."""
    turn = _int(request.GET.get("turn"))
    if turn is None or turn < 1:
        return HttpResponseBadRequest("Which turn? Send turn=<n> (a number from 1).")
    spans = selectors.turn_spans_get(
        tree=selectors.branch_tree_get(session_id=session_id),
        branch_id=request.GET.get("branch") or MAIN_BRANCH,
        turn=turn,
    )
    return JsonResponse(display_value(spans.as_json()), json_dumps_params={"ensure_ascii": False})


def _turn_rows(
    traces: selectors.SessionTraces, page: selectors.TurnPage
) -> list[tuple[selectors.Turn, selectors.TurnTrace]]:
    """Each turn of the page with its trace figures (read from the branch that wrote it)."""
    return [(turn, traces.turn(page.branch_id, turn.number)) for turn in page.turns]


@require_GET
@reviewer_required
@_not_found_as_404
def session_compare(request: HttpRequest, session_id: str) -> HttpResponse:
    """Two branches side by side from their fork point (``b`` defaults to another branch)."""
    a = request.GET.get("a") or MAIN_BRANCH
    b = request.GET.get("b") or ""
    if not b:
        tree = selectors.branch_tree_get(session_id=session_id)
        b = next((x for x in tree.order if x != a), a)
    compare = selectors.branch_compare_get(session_id=session_id, a=a, b=b)
    scores = selectors.compare_scores_get(compare=compare, user=request.user)
    tree = compare.tree or selectors.branch_tree_get(session_id=session_id)
    costs = selectors.compare_costs_get(
        compare=compare, traces=selectors.session_traces_get(tree=tree)
    )
    context = {"compare": compare, "scores": scores, "costs": costs}
    return render(request, "dashboard/session_compare.html", context)
