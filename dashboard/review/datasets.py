"""The dataset download: the sessions the session list's filters select, as a fine-tuning
JSONL, an evaluation JSONL or a CSV of annotations (``conversations.exchange.datasets``).

It lives beside the list because it selects exactly what the list shows
(:func:`list_selection`, the list's own filters); the command ``export_dataset`` uses the same
selection.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseBadRequest, HttpResponseBase
from django.views.decorators.http import require_GET

from conversations.exchange import datasets
from conversations.permissions import reviewer_required
from conversations.views import spool, stream_spooled

from .selectors.sessions import SessionListFilters, session_ids

__all__ = ["dataset_export", "list_selection"]


def list_selection(params: Mapping[str, str]) -> QuerySet[Any, Any] | None:
    """The session ids the session list's filters in ``params`` select (``None``: all)."""
    return session_ids(SessionListFilters.from_query(params))


@require_GET
@reviewer_required
def dataset_export(request: HttpRequest) -> HttpResponseBase:
    """The sessions the list's filters select (the list's query parameters) as a dataset:
    ``format`` = ``finetune`` (default), ``eval`` or ``annotations``; ``branch`` =
    ``preferred`` (default), ``best:<score definition>`` or a branch name.

    Read in one snapshot into memory or a temporary file (as :func:`session_export`, so the
    snapshot lasts as long as the read, not the download), then streamed; a bad format or
    branch choice is a 400 with the reason.
    """
    fmt = request.GET.get("format") or "finetune"
    try:
        choice = datasets.BranchChoice.parse(request.GET.get("branch"))
        chunks = datasets.dataset_chunks(
            fmt=fmt, branch=choice, sessions=list_selection(request.GET)
        )
    except datasets.DatasetError as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    body, size = spool(chunks)
    response = stream_spooled(body, request)
    response["Content-Type"] = datasets.CONTENT_TYPES[fmt]
    response["Content-Length"] = str(size)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    name = f"forkview-{fmt}-{stamp}.{datasets.EXTENSIONS[fmt]}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
