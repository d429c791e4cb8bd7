"""Download views: a session as a JSON tree, JSONL items or a Markdown transcript."""

from __future__ import annotations

import re

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from .exchange import CONTENT_TYPES, EXTENSIONS, FORMATS, export_text
from .models import MAIN_BRANCH, AgentSession
from .permissions import reviewer_required

__all__ = ["session_export"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _filename(session_id: str, branch_id: str, fmt: str) -> str:
    """A download name from the ids (anything but ``[A-Za-z0-9._-]`` becomes ``_``)."""
    stem = _UNSAFE.sub("_", session_id).strip("._") or "session"
    if fmt != "json":
        stem += "-" + (_UNSAFE.sub("_", branch_id).strip("._") or "branch")
    return f"{stem}.{EXTENSIONS[fmt]}"


@require_GET
@reviewer_required
def session_export(request: HttpRequest, session_id: str, fmt: str) -> HttpResponse:
    """``?branch=`` picks the branch for jsonl and markdown (default ``main``)."""
    if fmt not in FORMATS:
        raise Http404(f"Unknown export format {fmt!r}")
    branch_id = request.GET.get("branch") or MAIN_BRANCH
    try:
        text = export_text(session_id=session_id, fmt=fmt, branch_id=branch_id)
    except AgentSession.DoesNotExist as exc:
        raise Http404("No such session") from exc
    response = HttpResponse(text, content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = (
        f'attachment; filename="{_filename(session_id, branch_id, fmt)}"'
    )
    return response
