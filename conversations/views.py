"""Download views: a session as a JSON tree, JSONL items or a Markdown transcript (and the
spooling the dataset download of ``dashboard/review/datasets.py`` and the API share).

Memory stays flat whatever the session's size: the export is read in pieces
(``exchange.export_chunks``, one snapshot), kept in memory up to :data:`SPOOL_MAX_BYTES`
and answered as a plain response; a bigger one goes to a temporary file as it is read and is
streamed from there, :data:`BLOCK_BYTES` at a time (with its ``Content-Length``). Spooling,
not streaming straight from the database, keeps the export's read snapshot as short as the
read itself, however slowly the client downloads, and a missing session is still a 404
before the first byte. Under ASGI the file is read through an async iterator: Django would
otherwise read a synchronous one whole into memory before sending it.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import IO

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.views.decorators.http import require_GET

from .exchange import CONTENT_TYPES, EXTENSIONS, FORMATS, export_chunks
from .models import MAIN_BRANCH, AgentSession
from .permissions import reviewer_required

__all__ = [
    "BLOCK_BYTES",
    "SPOOL_MAX_BYTES",
    "session_export",
    "spool",
    "spooled_response",
    "stream_spooled",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: Exports up to this size are answered from memory; bigger ones from a temporary file.
SPOOL_MAX_BYTES = 1024 * 1024
#: Bytes per piece of a download streamed from its temporary file.
BLOCK_BYTES = 64 * 1024


def _filename(session_id: str, branch_id: str, fmt: str) -> str:
    """A download name from the ids (anything but ``[A-Za-z0-9._-]`` becomes ``_``)."""
    stem = _UNSAFE.sub("_", session_id).strip("._") or "session"
    if fmt != "json":
        stem += "-" + (_UNSAFE.sub("_", branch_id).strip("._") or "branch")
    return f"{stem}.{EXTENSIONS[fmt]}"


def spool(chunks: Iterator[str]) -> tuple[bytes | IO[bytes], int]:
    """The UTF-8 text of ``chunks``: as bytes up to :data:`SPOOL_MAX_BYTES`, else in a
    temporary file (at its start; the caller closes it). Returns it and its size."""
    parts: list[bytes] = []
    size = 0
    spill: IO[bytes] | None = None
    try:
        for chunk in chunks:
            data = chunk.encode("utf-8")
            size += len(data)
            if spill is None and size <= SPOOL_MAX_BYTES:
                parts.append(data)
                continue
            if spill is None:
                spill = tempfile.TemporaryFile()
                spill.writelines(parts)
                parts = []
            spill.write(data)
    except BaseException:
        if spill is not None:
            spill.close()
        raise
    if spill is None:
        return b"".join(parts), size
    spill.seek(0)
    return spill, size


def _blocks(file: IO[bytes]) -> Iterator[bytes]:
    with file:
        while block := file.read(BLOCK_BYTES):
            yield block


async def _blocks_async(file: IO[bytes]) -> AsyncIterator[bytes]:
    read = sync_to_async(file.read, thread_sensitive=False)
    try:
        while block := await read(BLOCK_BYTES):
            yield block
    finally:
        file.close()


@require_GET
@reviewer_required
def session_export(request: HttpRequest, session_id: str, fmt: str) -> HttpResponseBase:
    """``?branch=`` picks the branch for jsonl and markdown (default ``main``)."""
    if fmt not in FORMATS:
        raise Http404(f"Unknown export format {fmt!r}")
    branch_id = request.GET.get("branch") or MAIN_BRANCH
    try:
        body, size = spool(export_chunks(session_id=session_id, fmt=fmt, branch_id=branch_id))
    except AgentSession.DoesNotExist as exc:
        raise Http404("No such session") from exc
    response = spooled_response(body, size, request, content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = (
        f'attachment; filename="{_filename(session_id, branch_id, fmt)}"'
    )
    return response


def spooled_response(
    body: bytes | IO[bytes], size: int, request: HttpRequest, *, content_type: str
) -> HttpResponseBase:
    """The response for what :func:`spool` returned: the bytes whole, or the spooled file
    streamed in blocks (async iterators under ASGI) with its ``Content-Length``."""
    if isinstance(body, bytes):
        return HttpResponse(body, content_type=content_type)
    blocks = _blocks_async(body) if isinstance(request, ASGIRequest) else _blocks(body)
    response = StreamingHttpResponse(blocks, content_type=content_type)
    response["Content-Length"] = str(size)
    return response


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


def stream_spooled(body: bytes | IO[bytes], request: HttpRequest) -> StreamingHttpResponse:
    """A streamed response of the spooled text (async iterators under ASGI, see above)."""
    asgi = isinstance(request, ASGIRequest)
    if isinstance(body, bytes):
        return StreamingHttpResponse(_once(body) if asgi else iter([body]))
    return StreamingHttpResponse(_blocks_async(body) if asgi else _blocks(body))
