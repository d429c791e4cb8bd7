"""THE message search: the session list's search box and the demo agent's ``search_sessions``
tool both call :func:`search_hits`.

It is a plain sync function with keyword arguments (``search_hits(query="refund", limit=5)``);
from async code run it through ``sync_to_async`` / ``database_sync_to_async``. A hit's text
is the item's text as ``conversations.items.item_text`` reads it (content, reasoning summary,
tool name, arguments, query, output), so a hit is found by what the page shows, never by a
JSON key.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast

from conversations.items import is_undecodable, item_text, stored_json
from conversations.models import AgentMessage, MessageStructure
from dashboard.links import session_url

__all__ = ["MAX_QUERY", "SEARCH_LIMIT", "SearchHit", "search_hits"]

SEARCH_LIMIT = 20
#: Longest query searched (longer ones are cut).
MAX_QUERY = 200
#: Characters of context either side of the first match in a snippet.
SNIPPET_WIDTH = 90


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A message that matches, where it lives, and a snippet around the match.

    ``snippet`` is plain text (for agent tools); ``snippet_html`` the same text escaped, with
    the query's words in ``<mark>`` (safe HTML, for the page).
    """

    session_id: str
    message_id: int
    branch_id: str
    turn: int
    role: str
    snippet_html: str
    branches: tuple[str, ...]
    url: str
    snippet: str = ""

    @property
    def shared(self) -> bool:
        return len(self.branches) > 1


def _terms(query: str) -> list[str]:
    return [t for t in re.findall(r"\w[\w'-]*", query.lower()) if len(t) > 1] or (
        [query.lower().strip()] if query.strip() else []
    )


def _snippet(text: str, terms: Sequence[str], width: int = SNIPPET_WIDTH) -> tuple[str, str]:
    """(plain text, HTML with ``<mark>``) of the window around the first term in ``text``.

    ``terms`` is never empty (a non-blank query has at least itself as a term).
    """
    lowered = text.lower()
    positions = [lowered.find(t) for t in terms if lowered.find(t) >= 0]
    center = min(positions) if positions else 0
    start = max(0, center - width)
    end = min(len(text), center + width)
    window = " ".join(text[start:end].split())
    prefix = "… " if start > 0 else ""
    suffix = " …" if end < len(text) else ""
    pattern = re.compile("|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)), re.I)
    out, last = [], 0
    for m in pattern.finditer(window):
        out.append(html.escape(window[last : m.start()]))
        out.append(f"<mark>{html.escape(m.group(0))}</mark>")
        last = m.end()
    out.append(html.escape(window[last:]))
    return prefix + window + suffix, prefix + "".join(out) + suffix


def search_hits(
    *, query: str, limit: int = SEARCH_LIMIT, within: QuerySet[Any, str] | None = None
) -> tuple[SearchHit, ...]:
    """Messages matching ``query`` in any session, newest (or best ranked) first: 2 queries.

    PostgreSQL: full-text search (``websearch`` syntax, English stemming, GIN-indexed).
    SQLite: case-insensitive substring over the stored JSON text, re-checked on the item's
    text (so keys such as ``"role"`` never match). Undecodable rows are never hits.

    Args:
        query: What to look for (cut to :data:`MAX_QUERY` characters); blank finds nothing.
        limit: Most hits returned.
        within: Only in these sessions (a subquery of session ids, e.g. the session list's
            filters: ``sessions.session_ids``); ``None``: every session.

    Returns:
        One hit per message, placed where it was first written (its branch and turn), with
        every branch that holds it.
    """
    query = query.strip()[:MAX_QUERY]
    if not query:
        return ()
    terms = _terms(query)
    messages = AgentMessage.objects.all()
    if within is not None:
        messages = messages.filter(session_id__in=within)
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

        vector = SearchVector(Cast("message_data", TextField()), config="english")
        search = SearchQuery(query, config="english", search_type="websearch")
        candidates = list(
            messages.annotate(document=vector)
            .filter(document=search)
            .annotate(rank=SearchRank(vector, search))
            .order_by("-rank", "-id")
            .values_list("id", "session_id", "message_data")[: limit * 3]
        )
        strict = False
    else:
        # SQLite keeps the SDK's json.dumps text, where non-ASCII is \\u-escaped.
        escaped = str(stored_json(query))[1:-1]
        condition = Q(doc__icontains=query)
        if escaped != query:
            condition |= Q(doc__icontains=escaped)
        candidates = list(
            messages.annotate(doc=Cast("message_data", TextField()))
            .filter(condition)
            .order_by("-id")
            .values_list("id", "session_id", "message_data")[: limit * 5]
        )
        strict = True
    picked: list[tuple[int, str, str]] = []
    for message_id, session_id, data in candidates:
        text = "" if is_undecodable(data) else item_text(data)
        lowered = text.lower()
        if strict and query.lower() not in lowered:
            continue
        # Full-text search also indexes the JSON keys ("role", "type"): keep a hit only if
        # one of the query's words (or its stem-like prefix) is in the item's own text.
        if not strict and not any(t[: max(3, len(t) - 2)] in lowered for t in terms):
            continue
        picked.append((message_id, session_id, text))
        if len(picked) >= limit:
            break
    if not picked:
        return ()
    # By session too: message_structure has no message_id index (SQLite would scan it all).
    rows = MessageStructure.objects.filter(
        session_id__in=sorted({p[1] for p in picked}), message_id__in=[p[0] for p in picked]
    ).values_list("message_id", "sequence_number", "branch_id", "user_turn_number", "message_type")
    placements: dict[int, list[tuple[int, str, int | None, str]]] = {}
    for message_id, seq, branch, turn, mtype in rows:
        placements.setdefault(message_id, []).append((seq, branch, turn, mtype))
    hits = []
    for message_id, session_id, text in picked:
        places = sorted(placements.get(message_id, []))
        if not places:
            continue
        _, branch, first_turn, mtype = places[0]  # where it was first written
        turn = max(first_turn or 0, 1)
        plain, marked = _snippet(text, terms)
        hits.append(
            SearchHit(
                session_id=session_id,
                message_id=message_id,
                branch_id=branch,
                turn=turn,
                role=mtype,
                snippet_html=marked,
                branches=tuple(dict.fromkeys(p[1] for p in places)),
                url=session_url(session_id, branch, turn),
                snippet=plain,
            )
        )
    return tuple(hits)
