"""What a model call cost, in US dollars (issue 16 item 4).

Prices come from the ``genai-prices`` package's bundled price table (pinned in
requirements.lock): nothing is fetched at run time. ``genai-prices`` can refresh its table from
GitHub (``UpdatePrices``); Forkview never starts that, and prices with its own snapshot built
from the bundled data, so even an ``UpdatePrices`` started elsewhere in the process changes
nothing here (``tests/conversations/test_costs.py`` proves both with the network blocked).

Settings (``docs/costs.md``):

- ``FORKVIEW_PRICES``: ``{model: {"input": $/Mtok, "cached_input": $/Mtok, "output": $/Mtok}}``
  overrides or adds models (matched case-insensitively, before the price table);
  ``cached_input`` defaults to ``input``.
- ``FORKVIEW_DEFAULT_MODEL``: prices turns recorded without traces (their ``Usage`` rows), marked
  ``estimated``; empty: such turns have no price.

The arithmetic of an OpenAI Responses usage: ``input_tokens`` includes the cached ones, so
``(input - cached) * input price + cached * cached price + output * output price``; reasoning
tokens are part of ``output_tokens`` (priced as output, never added twice). An unknown model is
"no price" (``usd=None``), counted by :func:`total` and never guessed. The offline demo model
costs nothing and says so (``free=True``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from conversations.models import MODEL_SPAN_KINDS as MODEL_SPAN_KINDS

if TYPE_CHECKING:
    from genai_prices.data_snapshot import DataSnapshot

    from conversations.models import AgentSpan

logger = logging.getLogger(__name__)

# The offline demo model (dashboard/demo/model.py MODEL_NAME): free, and says so.
FREE_MODELS = frozenset({"forkview-offline-demo"})
MTOK = Decimal(1_000_000)
_PRICE_KEYS = ("input", "cached_input", "output")


@dataclass(frozen=True)
class Cost:
    """The cost of one model call (or one estimated turn)."""

    usd: Decimal | None  # None: no price known for the model ("no price")
    model: str | None
    estimated: bool = False  # priced with FORKVIEW_DEFAULT_MODEL (turn without a trace)
    free: bool = False  # the offline demo model: costs nothing, and says so


@dataclass(frozen=True)
class CostTotal:
    """A sum of costs: ``usd`` adds the priced ones (free and estimated included);
    ``priced`` counts those with a price (free and estimated included), ``unpriced`` those
    without ("no price"), ``estimated`` and ``free`` the ones so marked."""

    usd: Decimal
    priced: int
    unpriced: int
    estimated: int
    free: int

    @property
    def count(self) -> int:
        return self.priced + self.unpriced


EMPTY_TOTAL = CostTotal(usd=Decimal(0), priced=0, unpriced=0, estimated=0, free=0)


@dataclass(frozen=True)
class _Override:
    input: Decimal
    cached_input: Decimal
    output: Decimal


def _decimal(model: str, key: str, value: Any) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        number = Decimal("NaN")
    if not number.is_finite() or number < 0 or isinstance(value, bool):
        raise ImproperlyConfigured(
            f"FORKVIEW_PRICES[{model!r}][{key!r}] must be a non-negative number of dollars "
            f"per million tokens, not {value!r}"
        )
    return number


def _overrides() -> dict[str, _Override]:
    raw = getattr(settings, "FORKVIEW_PRICES", None) or {}
    return _parse_overrides(_freeze(raw))


def _freeze(raw: Any) -> Any:
    """A hashable copy of the setting (so parsing is cached, yet a changed setting is seen)."""
    if isinstance(raw, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in raw.items()))
    if isinstance(raw, list | tuple):
        return tuple(_freeze(v) for v in raw)
    return raw


@lru_cache(maxsize=8)
def _parse_overrides(frozen: Any) -> dict[str, _Override]:
    if not isinstance(frozen, tuple) or not all(
        isinstance(item, tuple) and len(item) == 2 for item in frozen
    ):
        raise ImproperlyConfigured(
            'FORKVIEW_PRICES must map model names to {"input": ..., "cached_input": ..., '
            '"output": ...} (dollars per million tokens)'
        )
    parsed: dict[str, _Override] = {}
    for model, prices in frozen:
        if not isinstance(prices, tuple) or not all(
            isinstance(item, tuple) and len(item) == 2 for item in prices
        ):
            raise ImproperlyConfigured(
                f"FORKVIEW_PRICES[{model!r}] must be a dict with input, cached_input and output"
            )
        given = dict(prices)
        unknown = set(given) - set(_PRICE_KEYS)
        if unknown or "input" not in given or "output" not in given:
            raise ImproperlyConfigured(
                f"FORKVIEW_PRICES[{model!r}] needs input and output (and optionally "
                f"cached_input), dollars per million tokens; got {sorted(given)}"
            )
        input_price = _decimal(model, "input", given["input"])
        parsed[model.strip().lower()] = _Override(
            input=input_price,
            cached_input=_decimal(model, "cached_input", given.get("cached_input", input_price)),
            output=_decimal(model, "output", given["output"]),
        )
    return parsed


@lru_cache(maxsize=1)
def _snapshot() -> DataSnapshot:
    """genai-prices' bundled table, in a snapshot of our own that nothing ever updates."""
    from genai_prices.data import providers
    from genai_prices.data_snapshot import DataSnapshot

    return DataSnapshot(providers=providers, from_auto_update=False)


def _count(value: int | None) -> int:
    return max(int(value or 0), 0)


def _table_price(
    model: str, input_tokens: int, output_tokens: int, cached: int, at: datetime | None
) -> Decimal | None:
    from genai_prices import Usage

    snapshot = _snapshot()
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cached)
    refs = [model]
    if "/" in model:  # "openai/gpt-4o", "litellm/anthropic/claude-...": try the bare name too
        refs.append(model.rsplit("/", 1)[1])
    for ref in refs:
        try:
            calculation = snapshot.calc(usage, ref, None, None, at)
        except LookupError:
            continue
        except ValueError:  # inconsistent usage (e.g. more cached than input tokens)
            logger.warning("genai-prices could not price %r with %r", model, usage)
            return None
        return calculation.total_price
    return None


def response_cost(
    *,
    model: str | None,
    input_tokens: int | None,
    output_tokens: int | None,
    cached_input_tokens: int | None = None,
    reasoning_tokens: int | None = None,
    at: datetime | None = None,
) -> Cost:
    """The cost of one model call's usage. ``reasoning_tokens`` are part of ``output_tokens``
    (the Responses API's usage) and so priced as output, not added; ``at``: when the call was
    made (prices that changed over time), default now."""
    del reasoning_tokens  # included in output_tokens
    name = (model or "").strip()
    if not name:
        return Cost(usd=None, model=None)
    if name.lower() in FREE_MODELS:
        return Cost(usd=Decimal(0), model=name, free=True)
    inputs, outputs = _count(input_tokens), _count(output_tokens)
    cached = min(_count(cached_input_tokens), inputs)
    override = _overrides().get(name.lower())
    if override is not None:
        usd = (
            (inputs - cached) * override.input
            + cached * override.cached_input
            + outputs * override.output
        ) / MTOK
        return Cost(usd=usd, model=name)
    return Cost(usd=_table_price(name, inputs, outputs, cached, at), model=name)


def span_cost(span: AgentSpan) -> Cost:
    """The cost of a response/generation span (its model and usage, at its start)."""
    return response_cost(
        model=span.model,
        input_tokens=span.input_tokens,
        output_tokens=span.output_tokens,
        cached_input_tokens=span.cached_input_tokens,
        reasoning_tokens=span.reasoning_tokens,
        at=span.started_at,
    )


NANOS = Decimal(1_000_000_000)


def to_nanos(usd: Decimal | None) -> int | None:
    """Dollars as whole billionths of a dollar (``AgentSpan.cost_nanos``), rounded half up."""
    if usd is None:
        return None
    return int((usd * NANOS).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def from_nanos(nanos: int | None) -> Decimal | None:
    return None if nanos is None else Decimal(int(nanos)) / NANOS


def span_cost_nanos(span: AgentSpan) -> int | None:
    """What a span's model call cost, in billionths of a dollar; None: not a model call, or
    no price for its model."""
    if span.kind not in MODEL_SPAN_KINDS:
        return None
    return to_nanos(span_cost(span).usd)


def price_spans(spans: Iterable[AgentSpan], *, again: bool = True) -> None:
    """Set ``cost_nanos`` on each span (every writer's ``bulk_create``/``save`` calls this).
    ``again=False`` leaves spans this function priced already (the trace processor prices a
    batch before it opens its write transaction, so SQLite's write lock is not held for it)."""
    for span in spans:
        if again or not getattr(span, "_forkview_priced", False):
            span.cost_nanos = span_cost_nanos(span)
            span._forkview_priced = True  # type: ignore[attr-defined]


def reprice_spans(
    span_model: Any = None, *, using: str = "default", batch: int = 500
) -> tuple[int, int]:
    """Price every recorded model span again with today's prices and settings (``manage.py
    reprice_spans``, migration 0011), ``batch`` spans per transaction; the summaries follow
    by their triggers. ``span_model``: ``AgentSpan`` or a migration's historical model.
    Returns (spans checked, spans whose cost changed)."""
    from django.db import transaction

    if span_model is None:
        from conversations.models import AgentSpan as span_model
    fields = ["span_id", "kind", "model", "input_tokens", "output_tokens"]
    fields += ["cached_input_tokens", "reasoning_tokens", "started_at", "cost_nanos"]
    spans = span_model._default_manager.using(using).filter(kind__in=MODEL_SPAN_KINDS)
    checked = changed = 0
    last = ""
    while True:
        with transaction.atomic(using=using):
            rows = list(spans.filter(span_id__gt=last).order_by("span_id").only(*fields)[:batch])
            if not rows:
                return checked, changed
            moved = []
            for span in rows:
                nanos = span_cost_nanos(span)
                if nanos != span.cost_nanos:
                    span.cost_nanos = nanos
                    moved.append(span)
            span_model._default_manager.using(using).bulk_update(moved, ["cost_nanos"])
        checked += len(rows)
        changed += len(moved)
        last = rows[-1].span_id


def stored_cost(model: str | None, cost_nanos: int | None) -> Cost:
    """A model span's recorded cost (``AgentSpan.cost_nanos``) as a :class:`Cost`."""
    name = (model or "").strip() or None
    return Cost(
        usd=from_nanos(cost_nanos),
        model=name,
        free=cost_nanos == 0 and name is not None and name.lower() in FREE_MODELS,
    )


def recorded_total(*, cost_nanos: int | None, calls: int, unpriced: int) -> CostTotal:
    """A sum of recorded model calls (``calls`` of them, ``unpriced`` without a price) as a
    :class:`CostTotal`; ``free`` when they are priced and cost nothing (the offline model)."""
    priced = max(calls - unpriced, 0)
    usd = from_nanos(cost_nanos) or Decimal(0)
    return CostTotal(
        usd=usd,
        priced=priced,
        unpriced=unpriced,
        estimated=0,
        free=priced if priced and usd == 0 else 0,
    )


def default_model() -> str:
    """``FORKVIEW_DEFAULT_MODEL`` (empty: turns without traces have no price)."""
    return str(getattr(settings, "FORKVIEW_DEFAULT_MODEL", "") or "").strip()


def estimated_cost(
    *,
    input_tokens: int | None,
    output_tokens: int | None,
    cached_input_tokens: int | None = None,
    at: datetime | None = None,
) -> Cost:
    """A turn recorded without traces, priced with ``FORKVIEW_DEFAULT_MODEL``: ``estimated``.
    Without that setting: no price."""
    model = default_model()
    if not model:
        return Cost(usd=None, model=None, estimated=False)
    cost = response_cost(
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached_input_tokens,
        at=at,
    )
    return Cost(usd=cost.usd, model=cost.model, estimated=cost.usd is not None, free=cost.free)


def total(costs: Iterable[Cost]) -> CostTotal:
    usd, priced, unpriced, estimated, free = Decimal(0), 0, 0, 0, 0
    for cost in costs:
        if cost.usd is None:
            unpriced += 1
            continue
        usd += cost.usd
        priced += 1
        estimated += cost.estimated
        free += cost.free
    return CostTotal(usd=usd, priced=priced, unpriced=unpriced, estimated=estimated, free=free)


def add_totals(totals: Iterable[CostTotal]) -> CostTotal:
    usd, priced, unpriced, estimated, free = Decimal(0), 0, 0, 0, 0
    for t in totals:
        usd += t.usd
        priced += t.priced
        unpriced += t.unpriced
        estimated += t.estimated
        free += t.free
    return CostTotal(usd=usd, priced=priced, unpriced=unpriced, estimated=estimated, free=free)


def format_usd(value: Decimal | None) -> str:
    """``$1.23`` from a dollar up, ``$0.0042`` below, ``<$0.0001`` for a sliver, ``$0`` for
    nothing, ``no price`` for None."""
    if value is None:
        return "no price"
    if value == 0:
        return "$0"
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value >= 1:
        return f"{sign}${value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"
    if value < Decimal("0.0001"):
        return f"{sign}<$0.0001"
    return f"{sign}${value.quantize(Decimal('0.0001'), rounding=ROUND_HALF_UP)}"


def describe(total_: CostTotal) -> str:
    """A total in words: ``$0.0042``, ``$0.0042 (2 estimated)``, ``$0.01 + 1 no price``,
    ``free``, ``no price``, ``""`` for nothing to price."""
    if total_.count == 0:
        return ""
    if total_.priced == 0:
        return "no price"
    if total_.free == total_.priced and total_.usd == 0:
        text = "free"
    else:
        text = format_usd(total_.usd)
    notes = []
    if total_.estimated:
        notes.append(f"{total_.estimated} estimated")
    if total_.unpriced:
        notes.append(f"{total_.unpriced} no price")
    return f"{text} ({', '.join(notes)})" if notes else text
