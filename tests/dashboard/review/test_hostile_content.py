"""Stored content is data, never markup: hostile inputs render inert on every page."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from dashboard.links import compare_url, session_url, usage_url
from dashboard.templatetags.forkview import render_markdown
from tests.support.builders import Writer
from tests.support.hostile import XSS, hostile_turns

pytestmark = pytest.mark.django_db

SID = "<script>alert('sid')</script> / x"
BRANCH = "<img src=x onerror=alert('branch')>"


class _TagAudit(HTMLParser):
    """Collects what a browser would actually treat as markup (not escaped text)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script" and (values.get("src") or "").startswith("/static/"):
            return
        if tag in {"script", "iframe", "svg", "img", "object", "embed", "style", "math"}:
            self.problems.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.problems.append(f"{tag}[{name}]")
            if name in {"href", "src", "action", "formaction"}:
                scheme = (value or "").strip().lower().replace("\t", "").replace("\n", "")
                if scheme.startswith(("javascript:", "data:", "vbscript:")):
                    self.problems.append(f"{tag}[{name}={value}]")


def _assert_inert(html: str) -> None:
    audit = _TagAudit()
    audit.feed(html)
    assert audit.problems == []


@pytest.mark.parametrize("payload", XSS)
def test_markdown_is_sanitised(payload):
    _assert_inert(f"<main>{render_markdown(payload)}</main>")


def test_markdown_keeps_safe_formatting():
    html = str(render_markdown("**b** [ok](https://example.org) `x`"))
    assert "<strong>b</strong>" in html and 'href="https://example.org"' in html


@pytest.fixture
def hostile():
    w = Writer(SID)
    for items in hostile_turns():
        w.turn(items, (10, 5))
    w.branch(2, BRANCH)
    w.turn(hostile_turns()[0], (11, 6))


def test_detail_page_renders_hostile_content_inert(reviewer_client, hostile):
    for branch in ("main", BRANCH):
        response = reviewer_client.get(session_url(SID, branch, 1))
        assert response.status_code == 200
        _assert_inert(response.content.decode())


def test_detail_page_truncates_huge_strings(reviewer_client, hostile):
    html = reviewer_client.get(session_url(SID)).content.decode()
    assert "more characters not shown" in html
    assert len(html) < 400_000


def test_list_search_and_compare_render_inert(reviewer_client, hostile):
    for url in (
        reverse("home"),
        reverse("home") + "?q=script",
        reverse("home") + "?q=%3Cscript%3E",
        compare_url(SID, "main", BRANCH),
    ):
        response = reviewer_client.get(url)
        assert response.status_code == 200, url
        _assert_inert(response.content.decode())


def test_usage_json_is_json(reviewer_client, hostile):
    response = reviewer_client.get(usage_url(SID, BRANCH))
    assert response["Content-Type"] == "application/json"
    assert response.json()["branch"] == BRANCH
