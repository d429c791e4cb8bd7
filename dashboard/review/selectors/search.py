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
from django.db.models import QuerySet

from conversations.items import decode_or_none, item_text
from conversations.models import MessageStructure
from conversations.search_index import PG_TABLE, SQLITE_TABLE
from dashboard.links import session_url

__all__ = [
    "CANDIDATE_SCAN",
    "MAX_QUERY",
    "SEARCH_LIMIT",
    "SearchHit",
    "search_hits",
    "search_scan_capped",
]

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


#: How many of the newest index matches one search reads at most before applying ``within``
#: (SQLite): a bound on the work whatever the word's frequency. A filter that keeps fewer
#: than ``limit`` of these shows fewer (the newest) hits, never a slow page.
CANDIDATE_SCAN = 2000
#: Candidates fetched per hit wanted (a candidate without a placement is skipped).
_SLACK = 2

# A query's chunks, as PostgreSQL's websearch syntax reads them: "a phrase", -not, or, word.
_CHUNK = re.compile(r'-?"[^"]*"?|\S+')
_WORD = re.compile(r"\w[\w'-]*")


def _terms(query: str) -> list[str]:
    """The words to mark in a snippet (not the negated ones, not ``or``)."""
    words = [
        t
        for chunk in _CHUNK.findall(query.lower())
        if not (chunk.startswith("-") and len(chunk) > 1) and chunk != "or"
        for t in _WORD.findall(chunk)
        if len(t) > 1
    ]
    return words or ([query.lower().strip()] if query.strip() else [])


def _stem(term: str) -> str:
    """A prefix that the term's inflections share (the index stems: "refunds" finds
    "refunded"), to place and mark a snippet."""
    return term[: max(4, len(term) - 3)] if len(term) > 4 else term


def _snippet(text: str, terms: Sequence[str], width: int = SNIPPET_WIDTH) -> tuple[str, str]:
    """(plain text, HTML with ``<mark>``) of the window around the first term in ``text``.

    ``terms`` is never empty (a non-blank query has at least itself as a term). A term
    matches where a word starts with it (or with its stem).
    """
    stems = sorted({_stem(t) for t in terms}, key=len, reverse=True)
    pattern = re.compile(
        "|".join(rf"(?<!\w){re.escape(s)}\w*" if s[:1].isalnum() else re.escape(s) for s in stems),
        re.I,
    )
    found = pattern.search(text)
    center = found.start() if found else 0
    start = max(0, center - width)
    end = min(len(text), center + width)
    window = " ".join(text[start:end].split())
    prefix = "… " if start > 0 else ""
    suffix = " …" if end < len(text) else ""
    out, last = [], 0
    for m in pattern.finditer(window):
        out.append(html.escape(window[last : m.start()]))
        out.append(f"<mark>{html.escape(m.group(0))}</mark>")
        last = m.end()
    out.append(html.escape(window[last:]))
    return prefix + window + suffix, prefix + "".join(out) + suffix


def _fts5_query(query: str) -> str:
    """``query`` in PostgreSQL's websearch syntax as an FTS5 expression ("" : nothing to find).

    Every word or ``"phrase"`` is quoted (so no input is FTS5 syntax), ``or`` joins its
    neighbours, ``-word`` excludes; the rest are ANDed, as ``websearch_to_tsquery`` reads them.
    """
    groups: list[list[str]] = []
    excluded: list[str] = []
    join_next = False
    for chunk in _CHUNK.findall(query):
        negated = chunk.startswith("-") and len(chunk) > 1
        body = chunk[1:] if negated else chunk
        if not negated and body.lower() == "or":
            join_next = bool(groups)
            continue
        body = body.strip('"')
        if _WORD.search(body) is None:
            continue
        phrase = '"' + body.replace('"', '""') + '"'
        if negated:
            excluded.append(phrase)
        elif join_next:
            groups[-1].append(phrase)
        else:
            groups.append([phrase])
        join_next = False
    if not groups:
        return ""
    expression = " AND ".join(g[0] if len(g) == 1 else f"({' OR '.join(g)})" for g in groups)
    for phrase in excluded:
        expression = f"({expression}) NOT {phrase}"
    return expression


def _within(within: QuerySet[Any, str], column: str) -> tuple[str, list[Any]]:
    """A condition (on ``column``, a session id) keeping the sessions of ``within``, checked per
    candidate (a correlated look-up the database pushes into the subquery), never by building
    the whole set of ids first: the cost follows the candidates, not the filter's size."""
    within = within.order_by()  # an ORDER BY would keep the subquery from being merged
    sql, params = within.query.sql_with_params()
    columns = within.query.values_select
    if len(columns) == 1 and re.fullmatch(r"\w+", columns[0]):
        return (
            f"EXISTS (SELECT 1 FROM ({sql}) AS w WHERE w.{columns[0]} = {column})",
            list(params),
        )
    return f"{column} IN ({sql})", list(params)


def _candidates(
    query: str, count: int, within: QuerySet[Any, str] | None
) -> list[tuple[int, str, Any]]:
    """(id, session id, stored JSON) of the newest messages matching ``query``: at most
    ``count``, newest first, each read through the search index (never a scan)."""
    postgresql = connection.vendor == "postgresql"
    where = ""
    params: list[Any] = []
    if within is not None:
        condition, params = _within(within, "s.session_id" if postgresql else "m.session_id")
        where = f"{'AND' if postgresql else 'WHERE'} {condition}"
    if postgresql:
        # Newest first on the side table's primary key (a stored tsvector: ~1 µs a row) for
        # a common word, its GIN index for a rare one: the planner picks by the statistics.
        sql = (
            "SELECT m.id, m.session_id, m.message_data FROM ("
            f"SELECT s.id FROM {PG_TABLE} s "
            "WHERE s.document @@ websearch_to_tsquery('english'::regconfig, %s) "
            f"{where} ORDER BY s.id DESC LIMIT %s) AS c "
            "JOIN agent_messages m ON m.id = c.id"
        )
        args: list[Any] = [query, *params, count]
    else:
        expression = _fts5_query(query)
        if not expression:
            return []
        # The newest CANDIDATE_SCAN matches, in rowid order straight from the index (FTS5
        # walks its doclists backwards and stops at the LIMIT), then ``within``.
        sql = (
            "SELECT m.id, m.session_id, m.message_data FROM ("
            f"SELECT rowid AS id FROM {SQLITE_TABLE} WHERE {SQLITE_TABLE} MATCH %s "
            "ORDER BY rowid DESC LIMIT %s) AS c "
            f"JOIN agent_messages AS m ON m.id = c.id {where} LIMIT %s"
        )
        args = [expression, CANDIDATE_SCAN if within is not None else count, *params, count]
    with connection.cursor() as cursor:
        cursor.execute(sql, args)
        rows = [(int(i), str(s), data) for i, s, data in cursor.fetchall()]
    rows.sort(key=lambda row: row[0], reverse=True)
    return rows


def search_scan_capped(*, query: str, within: QuerySet[Any, str] | None) -> bool:
    """Whether a search with ``within`` looked at only the newest :data:`CANDIDATE_SCAN`
    matches of ``query`` (SQLite): the page then says older messages were not searched.

    One index read of at most ``CANDIDATE_SCAN + 1`` row ids; always ``False`` on PostgreSQL
    (its search applies ``within`` inside the index scan) and without ``within``.
    """
    if within is None or connection.vendor == "postgresql":
        return False
    expression = _fts5_query(query.strip()[:MAX_QUERY])
    if not expression:
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM (SELECT rowid FROM {SQLITE_TABLE} "
            f"WHERE {SQLITE_TABLE} MATCH %s LIMIT %s)",
            [expression, CANDIDATE_SCAN + 1],
        )
        (count,) = cursor.fetchone()
    return int(count) > CANDIDATE_SCAN


def search_hits(
    *, query: str, limit: int = SEARCH_LIMIT, within: QuerySet[Any, str] | None = None
) -> tuple[SearchHit, ...]:
    """Messages matching ``query`` in any session, newest first: 2 queries.

    Both vendors search words (PostgreSQL's ``websearch`` syntax: ``"a phrase"``, ``or``,
    ``-word``), English-stemmed, case- and (SQLite) accent-insensitive, over each item's
    text only, through an index the database keeps (``conversations.search_index``):
    FTS5 on SQLite, a GIN expression index on PostgreSQL. The work is bounded by ``limit``
    (and, on SQLite with ``within``, by :data:`CANDIDATE_SCAN`), not by the number of
    messages or matches. Undecodable rows are never hits.

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
    if not query or limit <= 0:
        return ()
    terms = _terms(query)
    picked: list[tuple[int, str, str]] = []
    for message_id, session_id, data in _candidates(query, limit * _SLACK, within):
        text = item_text(decode_or_none(data))
        if text:
            picked.append((message_id, session_id, text))
    if not picked:
        return ()
    # By session too: the look-up stays on the (session_id, ...) index wherever it runs.
    rows = MessageStructure.objects.filter(
        session_id__in=sorted({p[1] for p in picked}), message_id__in=[p[0] for p in picked]
    ).values_list("message_id", "sequence_number", "branch_id", "user_turn_number", "message_type")
    placements: dict[int, list[tuple[int, str, int | None, str]]] = {}
    for message_id, seq, branch, turn, mtype in rows:
        placements.setdefault(message_id, []).append((seq, branch, turn, mtype))
    hits: list[SearchHit] = []
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
        if len(hits) >= limit:
            break
    return tuple(hits)
