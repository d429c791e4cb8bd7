"""Benchmark: the overhead of ``ForkviewTracingProcessor`` per ``Runner.run`` (issue 16).

Run from the repository root::

    .venv/bin/python bench/tracing_bench.py                  # SQLite, 1,500 runs per mode
    .venv/bin/python bench/tracing_bench.py --quick          # smoke run (< 30 s)
    .venv/bin/python bench/tracing_bench.py --postgres postgres://u:p@127.0.0.1:5432/db
    BENCH_DATABASE_URL=postgres://... .venv/bin/python bench/tracing_bench.py

One agent run = two model calls (a scripted model that traces like ``OpenAIResponsesModel``:
a response span with model and usage) and one real ``@function_tool`` call: about ten spans
(task, turn, agent, two responses, the function) and a trace. Modes, interleaved run by run
in a shuffled order so machine noise hits them alike:

- ``no processor``: tracing on, no processor installed (the SDK still builds its spans);
- ``forkview``: ``ForkviewTracingProcessor`` installed (its worker writes in the background,
  as in production; its default 1 s schedule);
- ``tracing disabled``: ``RunConfig(tracing_disabled=True)``, for reference.

The overhead is the difference of the medians (forkview - no processor); the target is
<= 1 ms. Since that difference is within the machine's noise, the time the run spends inside
the processor's callbacks (a trace's start and end, each span's end) is also summed exactly,
against the same target. ``DjangoSession.run_config()`` (one indexed read) is timed on its
own. Afterwards every forkview run's trace and spans must be in the database (nothing
dropped). The PostgreSQL run creates a scratch database on the given server (the role needs
CREATEDB) and drops it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
import tests.support.environment  # noqa: E402, F401  (the tests' key and plain-HTTP settings)

TARGET_MS = 1.0


def _configure(args: argparse.Namespace) -> str | None:
    """Point DATABASE_URL at the bench database; return a scratch PostgreSQL name to drop."""
    if args.postgres:
        parts = urlsplit(args.postgres)
        name = f"tracing_bench_{os.getpid()}"
        os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
        os.environ["BENCH_ADMIN_URL"] = args.postgres
        return name
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="tracing_bench_"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bench.sqlite3"
    path.unlink(missing_ok=True)
    os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    return None


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(os.environ["BENCH_ADMIN_URL"], autocommit=True) as conn:
        conn.execute(sql)


def _model() -> Any:
    """A model that calls ``lookup`` once, then answers; traced like OpenAIResponsesModel."""
    from agents import Model, ModelResponse
    from agents.testing import assistant_message, function_call
    from agents.tracing import response_span
    from agents.usage import Usage, model_usage_to_span_usage
    from openai.types.responses import Response
    from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

    usage = Usage(
        requests=1,
        input_tokens=120,
        output_tokens=12,
        total_tokens=132,
        input_tokens_details=InputTokensDetails(cached_tokens=64, cache_write_tokens=0),
        output_tokens_details=OutputTokensDetails(reasoning_tokens=8),
    )

    class BenchModel(Model):
        async def get_response(
            self,
            system_instructions: Any,
            input: Any,
            model_settings: Any,
            tools: Any,
            output_schema: Any,
            handoffs: Any,
            tracing: Any,
            **kwargs: Any,
        ) -> ModelResponse:
            called = isinstance(input, list) and any(
                isinstance(i, dict) and i.get("type") == "function_call_output" for i in input
            )
            output = (
                [assistant_message("42")]
                if called
                else [function_call("lookup", {"q": "x"}, call_id="c1")]
            )
            with response_span(disabled=tracing.is_disabled()) as span:
                span.span_data.usage = model_usage_to_span_usage(usage)
                if tracing.include_data():
                    span.span_data.response = Response.model_construct(
                        id="resp_bench", model="gpt-bench", output=output, usage=None
                    )
                    span.span_data.input = input
            return ModelResponse(output=output, usage=usage, response_id=None)

        def stream_response(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

    return BenchModel()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _bench(runs: int) -> tuple[dict[str, list[float]], list[float], Any, int, float]:
    from agents import Agent, RunConfig, Runner, function_tool, set_trace_processors
    from agents.tracing import TracingProcessor, get_trace_provider

    from conversations.session import DjangoSession
    from conversations.tracing import ForkviewTracingProcessor

    @function_tool
    def lookup(q: str) -> str:
        """Look something up."""
        return f"found {q}"

    agent = Agent(name="bench", instructions="Answer.", model=_model(), tools=[lookup])

    class Timed(ForkviewTracingProcessor):
        """Adds up the time the run spends in this processor's callbacks."""

        spent = 0.0

        def on_trace_start(self, trace: Any) -> None:
            start = time.perf_counter()
            super().on_trace_start(trace)
            self.spent += time.perf_counter() - start

        def on_trace_end(self, trace: Any) -> None:
            start = time.perf_counter()
            super().on_trace_end(trace)
            self.spent += time.perf_counter() - start

        def on_span_end(self, span: Any) -> None:
            start = time.perf_counter()
            super().on_span_end(span)
            self.spent += time.perf_counter() - start

    get_trace_provider().set_disabled(False)
    processor = Timed()
    modes: dict[str, tuple[list[TracingProcessor], RunConfig]] = {
        "no processor": ([], RunConfig()),
        "forkview": ([processor], RunConfig()),
        "tracing disabled": ([], RunConfig(tracing_disabled=True)),
    }
    times: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(20):  # warm-up: imports, the worker thread, the first connection
        for processors, config in modes.values():
            set_trace_processors(processors)
            await Runner.run(agent, "q", run_config=config)
    processor.force_flush()
    from conversations.models import AgentTrace

    warm = await _count(AgentTrace)
    processor.spent = 0.0
    order = list(modes)
    for _ in range(runs):
        random.shuffle(order)
        for name in order:
            processors, config = modes[name]
            set_trace_processors(processors)
            start = time.perf_counter()
            await Runner.run(agent, "q", run_config=config)
            times[name].append((time.perf_counter() - start) * 1000)
    set_trace_processors([])
    callbacks_ms = processor.spent * 1000 / runs
    processor.force_flush()
    stored = await _count(AgentTrace) - warm

    session = DjangoSession(session_id="bench")
    await session.add_items([{"role": "user", "content": "hi"}])
    configs = []
    for _ in range(max(50, runs // 10)):
        start = time.perf_counter()
        await session.run_config()
        configs.append((time.perf_counter() - start) * 1000)
    processor.shutdown()
    return times, configs, processor.stats, stored, callbacks_ms


async def _count(model: Any) -> int:
    from asgiref.sync import sync_to_async

    return int(await sync_to_async(model.objects.count)())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 runs per mode")
    parser.add_argument("--runs", type=int, default=0, help="runs per mode (default 1,500)")
    parser.add_argument("--postgres", default=os.environ.get("BENCH_DATABASE_URL", ""))
    parser.add_argument("--workdir", default="")
    args = parser.parse_args()
    runs = args.runs or (200 if args.quick else 1500)
    scratch = _configure(args)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    os.environ.setdefault("DJANGO_DEBUG", "0")
    if scratch:
        _admin(f'CREATE DATABASE "{scratch}"')
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        vendor = connection.vendor
        connection.close()
        times, configs, stats, stored, callbacks_ms = asyncio.run(_bench(runs))
    finally:
        if scratch:
            from django.db import connections

            connections.close_all()
            _admin(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')

    print(f"== Tracing overhead per Runner.run ({vendor}, {runs} runs per mode, interleaved) ==")
    print(f"{'mode':<20}{'median ms':>11}{'p95 ms':>10}{'mean ms':>10}")
    for name, values in times.items():
        print(
            f"{name:<20}{statistics.median(values):>11.3f}{_pct(values, 0.95):>10.3f}"
            f"{statistics.fmean(values):>10.3f}"
        )
    overhead = statistics.median(times["forkview"]) - statistics.median(times["no processor"])
    print(f"{'overhead (median)':<20}{overhead:>11.3f}")
    print(f"{'callbacks per run':<20}{callbacks_ms:>11.3f}   (time inside the processor's on_*)")
    print(
        f"{'run_config()':<20}{statistics.median(configs):>11.3f}{_pct(configs, 0.95):>10.3f}"
        f"{statistics.fmean(configs):>10.3f}"
    )
    print(f"-- processor stats: {stats}")
    complete = stored == runs and stats["dropped"] == 0 and stats["failed_batches"] == 0
    print(f"-- every forkview run's trace stored ({stored}/{runs}): {'OK' if complete else 'NO'}")

    print("== Targets ==")
    targets = [
        (overhead <= TARGET_MS, f"processor overhead per run <= {TARGET_MS} ms median"),
        (callbacks_ms <= TARGET_MS, f"time in the processor's callbacks per run <= {TARGET_MS} ms"),
        (complete, "nothing dropped, every trace stored"),
    ]
    for ok, label in targets:
        print(f"{'PASS' if ok else 'FAIL'}  {label}")
    print(f"{sum(ok for ok, _ in targets)}/{len(targets)} targets met")
    return 0 if complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
