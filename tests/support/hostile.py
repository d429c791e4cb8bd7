"""A corpus of nasty stored content; every page must render it inert."""

from __future__ import annotations

import json
from typing import Any

XSS = [
    "<script>window.__pwned = 1; alert('script')</script>",
    "<img src=x onerror=\"window.__pwned=1;alert('img')\">",
    "<svg/onload=alert('svg')>",
    "[click me](javascript:alert('md-link'))",
    "[x](JaVaScRiPt:alert(1)) [y](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![img](javascript:alert('md-img'))",
    "<a href=\"javascript:alert('raw')\">raw link</a>",
    "<iframe src=\"javascript:alert('iframe')\"></iframe>",
    '<div style="background:url(javascript:alert(1))" onclick="alert(1)">styled</div>',
    "\"><script>alert('attr-break')</script>",
    "</textarea></pre></details><script>alert('close')</script>",
    "{{ 7*7 }} {% debug %} ${alert(1)}",
]
ODD_UNICODE = (
    "RTL \u202eevil\u202c · zero\u200bwidth · combining e\u0301\u0301\u0301"
    " · emoji 👩‍💻 · \ufeffBOM · 𝕌𝕟𝕚𝕔𝕠𝕕𝕖"
)
HUGE = "A" * 300_000


def deep(n: int) -> Any:
    value: Any = "bottom"
    for _ in range(n):
        value = {"k": [value]}
    return value


def hostile_turns() -> list[list[dict[str, Any]]]:
    """Turns whose items carry the corpus in every field the UI shows."""
    turns = []
    for n, payload in enumerate(XSS, 1):
        turns.append(
            [
                {"role": "user", "content": payload},
                {
                    "type": "reasoning",
                    "id": f"rs{n}",
                    "summary": [{"type": "summary_text", "text": payload}],
                },
                {
                    "type": "function_call",
                    "name": f"<b onmouseover=alert({n})>tool</b>",
                    "call_id": f"<call {n}>",
                    "arguments": json.dumps({"html": payload}),
                },
                {"type": "function_call_output", "call_id": f"<call {n}>", "output": payload},
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": payload, "annotations": []}],
                },
            ]
        )
    turns.append(
        [
            {"role": "user", "content": [{"type": "input_text", "text": ODD_UNICODE}]},
            {
                "type": "function_call",
                "name": "deep",
                "call_id": "deep1",
                "arguments": json.dumps(deep(150)),
            },
            {"type": "function_call_output", "call_id": "deep1", "output": HUGE},
            {
                "type": "web_search_call",
                "id": "ws1",
                "status": "<b>completed</b>",
                "action": {"type": "search", "query": "<script>alert('ws')</script>"},
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": HUGE[:50_000] + " end", "annotations": []}
                ],
            },
        ]
    )
    return turns


# ---- Text that is not valid UTF-8 once stored, and ids that fight the URL routes -------------
# (issue 12). Every entry point must reject these with a clear error or store them and render
# them visibly replaced (U+FFFD); every page must render 200 when such rows already exist.

LONE_SURROGATE = "\ud800 hi"
BAD_TEXT = [
    LONE_SURROGATE,
    "tail surrogate \udfff",
    "NUL \x00 inside",
    "bell \x07 escape \x1b[31m red \x1b[0m",
    "C1 \x85 \x9b controls",
    "noncharacter \uffff \ufffe",
]
ROUTE_SUFFIXES = [
    "/chat",
    "/compare",
    "/usage.json",
    "/turns",
    "/prefer",
    "/export/json",
    "/export/jsonl",
    "/export/md",
]
HOSTILE_IDS = [
    "line\nbreak",
    "tab\tand\rcr",
    "bell\x07",
    "trailing/",
    "slash/inside",
    "percent%2Fencoded",
    "question?mark=1",
    "hash#frag",
    "dot/../dot",
    " spaced ",
    *[f"ends{suffix}" for suffix in ROUTE_SUFFIXES],
]
