"""The compare page's diff work is bounded, and the page says when it falls back (issue 12)."""

from __future__ import annotations

import random

import pytest

from dashboard.links import compare_url
from dashboard.review.selectors import compare
from tests.support.builders import Writer


def unique_text(seed: int, chars: int = 20_000) -> str:
    """``chars`` characters of tokens that (almost) never repeat: difflib's worst case."""
    rng = random.Random(seed)
    words, size = [], 0
    while size < chars:
        word = f"id{rng.randrange(10**12):x}"
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:chars]


def answer(text: str) -> dict[str, object]:
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def test_small_texts_get_a_word_diff():
    left, right, mode = compare._diff_html("a b c", "a x c", [compare.PAGE_DIFF_CELLS])
    assert mode == compare.WORDS
    assert "<del>b </del>" in left and "<ins>x </ins>" in right


def test_long_repetitive_texts_fall_back_to_lines():
    a = "\n".join(["same word " * 40] * 150) + "\nleft"
    b = "\n".join(["same word " * 40] * 150) + "\nright"
    a = a.replace("same", "left", 1)
    _, _, mode = compare._diff_html(a, b, [compare.PAGE_DIFF_CELLS])
    assert mode == compare.LINES


def test_huge_unique_texts_are_bounded():
    a, b = unique_text(1, 200_000), unique_text(2, 200_000)
    a, b = a.replace(" ", "\n"), b.replace(" ", "\n")
    left, right, mode = compare._diff_html(a, b, [compare.PAGE_DIFF_CELLS])
    assert mode == compare.NONE
    assert "<del>" not in left and "<ins>" not in right


def test_page_budget_bounds_the_sum_of_rows():
    budget = [compare.WORD_DIFF_CELLS]
    words = " ".join(f"w{i}" for i in range(400))
    other = " ".join(f"v{i}" for i in range(400))
    assert compare._diff_html(words, other, budget)[2] == compare.WORDS
    assert compare._diff_html(words, other, budget)[2] != compare.WORDS


@pytest.mark.django_db
def test_compare_page_announces_the_fallback(reviewer_client):
    w = Writer("big")
    w.turn([{"role": "user", "content": "q1"}, answer("same start")], (1, 1))
    w.turn([{"role": "user", "content": "q2"}, answer(unique_text(1))], (1, 1))
    w.branch(2, "alt")
    w.turn([{"role": "user", "content": "q2 again"}, answer(unique_text(2))], (1, 1))
    response = reviewer_client.get(compare_url("big", "main", "alt"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="compare-diff-notice"' in html
    assert "too long for a word-by-word diff" in html
    assert 'data-diff-mode="' in html
