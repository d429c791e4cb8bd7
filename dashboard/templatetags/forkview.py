"""Template helpers for the review pages: safe markdown, token numbers, branch-aware URLs.

``{% load forkview %}`` then ``{{ text|markdown }}``: CommonMark with raw HTML disabled,
then sanitised by nh3 (ammonia) with a small allow-list, so stored model output can never
inject script, event handlers, styles or ``javascript:`` links.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import nh3
from django import template
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

from conversations.items import display_text

register = template.Library()

# No <img>: a remote image in stored model output would leak the reviewer's visit.
ALLOWED_TAGS = {
    "a",
    "abbr",
    "b",
    "blockquote",
    "br",
    "code",
    "del",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "li",
    "ol",
    "p",
    "pre",
    "s",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "ul",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "td": {"align"},
    "th": {"align"},
    "ol": {"start"},
}
URL_SCHEMES = {"http", "https", "mailto"}
MAX_MARKDOWN = 100_000


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # html=False: raw HTML in model output is shown as text, not parsed.
    return (
        MarkdownIt("commonmark", {"html": False, "linkify": False})
        .enable("table")
        .enable("strikethrough")
    )


def render_markdown(text: str) -> SafeString:
    """Markdown to sanitised HTML (never raises on odd input)."""
    if not text:
        return mark_safe("")
    text = display_text(text[:MAX_MARKDOWN])  # nh3 refuses lone surrogates
    try:
        rendered = _parser().render(text)
    except (RecursionError, ValueError):
        from django.utils.html import escape

        return mark_safe(f"<pre>{escape(text[:MAX_MARKDOWN])}</pre>")  # noqa: S308 - escaped
    clean = nh3.clean(
        rendered,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
    return mark_safe(clean)  # noqa: S308 - sanitised by nh3 just above


@register.filter(name="markdown")
def markdown_filter(text: Any) -> SafeString:
    return render_markdown(str(text) if text is not None else "")


@register.filter
def tokens(value: Any) -> str:
    """1234567 -> '1.23M', 12345 -> '12.3k', 999 -> '999'."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        return "–"
    if abs(n) >= 1_000_000:
        return f"{n / 1_000_000:.2f}M"
    if abs(n) >= 10_000:
        return f"{n / 1000:.1f}k"
    return f"{n:,}"


@register.simple_tag(takes_context=True)
def sort_url(context: Any, key: str) -> str:
    """The list URL sorted by ``key`` (toggling direction), other parameters kept."""
    request = context["request"]
    params = request.GET.copy()
    current = params.get("sort", "-updated")
    params["sort"] = key if current == f"-{key}" else f"-{key}"
    params.pop("page", None)
    return f"?{params.urlencode()}"


@register.simple_tag(takes_context=True)
def page_url(context: Any, number: int) -> str:
    params = context["request"].GET.copy()
    params["page"] = number
    return f"?{params.urlencode()}"
