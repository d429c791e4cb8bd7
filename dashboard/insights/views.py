"""The insights page and its JSON twin: view permission, GET only, ``from``/``to`` as dates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from conversations.permissions import reviewer_required

from .selectors import insights_get

DEFAULT_DAYS = 30
MAX_DAYS = 366


@dataclass(frozen=True)
class Range:
    start: date
    end: date
    error: str = ""


def _today() -> date:
    return datetime.now(tz=UTC).date()


def _parse(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"“{name}” must be a date like 2026-01-31, not {value[:40]!r}.") from None


def parse_range(request: HttpRequest) -> Range:
    """The days asked for (default: the last 30, today included), or the reason they are bad
    (with the default range, so the page still renders)."""
    today = _today()
    default = Range(today - timedelta(days=DEFAULT_DAYS - 1), today)
    raw_from = request.GET.get("from", "").strip()
    raw_to = request.GET.get("to", "").strip()
    try:
        end = _parse(raw_to, "to") if raw_to else today
        start = _parse(raw_from, "from") if raw_from else end - timedelta(days=DEFAULT_DAYS - 1)
    except ValueError as exc:
        return Range(default.start, default.end, str(exc))
    if start > end:
        return Range(default.start, default.end, "“from” must not be after “to”.")
    if (end - start).days + 1 > MAX_DAYS:
        return Range(default.start, default.end, f"A range holds at most {MAX_DAYS} days.")
    return Range(start, end)


@require_GET
@reviewer_required
def insights(request: HttpRequest) -> HttpResponse:
    """Latency and cost per day and per model, tool error rates, the slowest and costliest turns."""
    days = parse_range(request)
    status = 400 if days.error else 200
    data = insights_get(start=days.start, end=days.end)
    json_url = f"{reverse('insights_json')}?from={days.start.isoformat()}&to={days.end.isoformat()}"
    context = {
        "insights": data,
        "error": days.error,
        "json_url": json_url,
        "max_error_rate": max((t.error_rate for t in data.tools), default=0.0),
    }
    return render(request, "dashboard/insights.html", context, status=status)


@require_GET
@reviewer_required
def insights_json(request: HttpRequest) -> JsonResponse:
    """The page's numbers as JSON (the charts read it); a bad range is a 400 saying why."""
    days = parse_range(request)
    if days.error:
        return JsonResponse({"error": days.error}, status=400)
    data = insights_get(start=days.start, end=days.end)
    return JsonResponse(data.as_json(), json_dumps_params={"ensure_ascii": False})
