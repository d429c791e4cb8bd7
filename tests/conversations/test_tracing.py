"""``ForkviewTracingProcessor`` under the real ``Runner`` (issue 16).

A scripted model (the SDK's ``ScriptedModel``) wrapped the way ``OpenAIResponsesModel`` wraps
its calls (a response span carrying the ``Response``: model and usage), real
``@function_tool`` tools (one fails), a real handoff, ``DjangoSession.run_config()`` linking,
the data policy, load, a full queue, shutdown, two processes, and a database that refuses.

Every test replaces the SDK's global processors with its own (``set_trace_processors``): the
OpenAI exporter is not installed during these tests, so nothing tries the network; the previous
processors and the disabled flag are restored afterwards.

Run as ``python -m tests.conversations.test_tracing RUNS TAG`` this module is also the worker
process of the multi-process test.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from agents import (
    Agent,
    Model,
    ModelResponse,
    ModelSettings,
    ModelTracing,
    RunConfig,
    Runner,
    Tool,
    TResponseInputItem,
    custom_span,
    function_tool,
    handoff,
    set_trace_processors,
    trace,
)
from agents.agent_output import AgentOutputSchemaBase
from agents.handoffs import Handoff
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call
from agents.tracing import Span, Trace, TracingProcessor, get_trace_provider, response_span
from agents.usage import Usage, model_usage_to_span_usage
from asgiref.sync import sync_to_async
from openai.types.responses import Response, ResponseUsage
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

if __name__ == "__main__":  # the multi-process test's worker: Django before the models
    import django

    django.setup()

from conversations.models import AgentSpan, AgentTrace  # noqa: E402
from conversations.session import DjangoSession  # noqa: E402
from conversations.tracing import ForkviewTracingProcessor  # noqa: E402

MODEL_NAME = "gpt-test-1"
REPO = Path(__file__).resolve().parents[2]


# ---- A scripted model that traces like OpenAIResponsesModel -----------------------------------


def step_usage(input_tokens: int, output_tokens: int, cached: int = 0, reasoning: int = 0) -> Usage:
    return Usage(
        requests=1,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
        input_tokens_details=InputTokensDetails(cached_tokens=cached, cache_write_tokens=0),
        output_tokens_details=OutputTokensDetails(reasoning_tokens=reasoning),
    )


class TracedModel(Model):
    """``ScriptedModel``'s answers inside a response span, set as ``OpenAIResponsesModel`` does:
    usage always; the ``Response`` (model, output, usage) and the input only when the run
    includes sensitive data."""

    def __init__(self, steps: list[ModelStep], name: str = MODEL_NAME) -> None:
        self.inner = ScriptedModel(steps)
        self.name = name

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: Any,
    ) -> ModelResponse:
        with response_span(disabled=tracing.is_disabled()) as span:
            result = await self.inner.get_response(
                system_instructions,
                input,
                model_settings,
                tools,
                output_schema,
                handoffs,
                tracing,
                previous_response_id=previous_response_id,
                conversation_id=conversation_id,
                prompt=prompt,
            )
            usage = result.usage
            span.span_data.usage = model_usage_to_span_usage(usage)
            if tracing.include_data():
                span.span_data.response = Response.model_construct(
                    id=f"resp_{len(self.inner.calls)}",
                    object="response",
                    created_at=0,
                    model=self.name,
                    output=result.output,
                    usage=ResponseUsage(
                        input_tokens=usage.input_tokens,
                        output_tokens=usage.output_tokens,
                        total_tokens=usage.total_tokens,
                        input_tokens_details=usage.input_tokens_details,
                        output_tokens_details=usage.output_tokens_details,
                    ),
                )
                span.span_data.input = input
            return result

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


@function_tool
def get_weather(city: str) -> str:
    """Today's weather in a city."""
    return f"Sunny in {city}"


@function_tool
def explode(reason: str) -> str:
    """A tool that fails."""
    raise RuntimeError(f"boom: {reason}")


@function_tool
def odd_text() -> str:
    """Output no database stores as is: a NUL and a lone surrogate."""
    return "a\x00b\ud800c"


def agents_with_handoff() -> tuple[Agent[Any], TracedModel]:
    """``triage`` calls two tools (one fails), hands off to ``expert``, who answers."""
    model = TracedModel(
        [
            ModelStep(
                output=[
                    function_call("get_weather", {"city": "Paris"}, call_id="c1"),
                    function_call("explode", {"reason": "secret-arg"}, call_id="c2"),
                ],
                usage=step_usage(100, 10, cached=20, reasoning=4),
            ),
            ModelStep(
                output=[function_call("transfer_to_expert", {}, call_id="c3")],
                usage=step_usage(130, 8, cached=100),
            ),
            ModelStep(output=[assistant_message("Sunny.")], usage=step_usage(150, 5, reasoning=2)),
        ]
    )
    expert = Agent(name="expert", instructions="Answer.", model=model)
    triage = Agent(
        name="triage",
        instructions="Route.",
        model=model,
        tools=[get_weather, explode],
        handoffs=[handoff(expert)],
    )
    return triage, model


def one_tool_agent(answer: str = "Done.") -> Agent[Any]:
    model = TracedModel(
        [
            ModelStep(
                output=[function_call("get_weather", {"city": "Oslo"}, call_id="c1")],
                usage=step_usage(50, 5),
            ),
            ModelStep(output=[assistant_message(answer)], usage=step_usage(60, 3)),
        ]
    )
    return Agent(name="helper", instructions="Help.", model=model, tools=[get_weather])


# ---- Fixtures -----------------------------------------------------------------------------------


pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def install() -> Iterator[Callable[..., ForkviewTracingProcessor]]:
    """Install processors as the SDK's only ones; shut them down and restore afterwards."""
    provider = get_trace_provider()
    multi = getattr(provider, "_multi_processor")  # noqa: B009  (the SDK has no getter)
    saved = list(multi._processors)
    was_disabled = getattr(provider, "_disabled", False)
    provider.set_disabled(False)
    made: list[TracingProcessor] = []

    def _install(*processors: TracingProcessor, **kwargs: Any) -> ForkviewTracingProcessor:
        if not processors:
            processors = (ForkviewTracingProcessor(**kwargs),)
        made.extend(processors)
        set_trace_processors(list(processors))
        first = processors[0]
        assert isinstance(first, ForkviewTracingProcessor)
        return first

    try:
        yield _install
    finally:
        for processor in made:
            processor.shutdown()
        set_trace_processors(saved)
        provider.set_disabled(was_disabled)


class Counter(TracingProcessor):
    """Counts what the SDK emits (the reference for "nothing lost")."""

    def __init__(self) -> None:
        self.traces: list[str] = []
        self.spans: list[str] = []
        self._lock = threading.Lock()

    def on_trace_start(self, trace: Trace) -> None:
        with self._lock:
            self.traces.append(trace.trace_id)

    def on_trace_end(self, trace: Trace) -> None:
        pass

    def on_span_start(self, span: Span[Any]) -> None:
        pass

    def on_span_end(self, span: Span[Any]) -> None:
        with self._lock:
            self.spans.append(span.span_id)

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


class Timed(ForkviewTracingProcessor):
    """Records the longest time a callback kept the run waiting."""

    longest = 0.0

    def on_span_end(self, span: Span[Any]) -> None:
        start = time.perf_counter()
        super().on_span_end(span)
        self.longest = max(self.longest, time.perf_counter() - start)

    def on_trace_end(self, trace: Trace) -> None:
        start = time.perf_counter()
        super().on_trace_end(trace)
        self.longest = max(self.longest, time.perf_counter() - start)


@contextmanager
def write_lock_held() -> Iterator[None]:
    """Hold the database's write lock (SQLite) or lock the trace tables (PostgreSQL) from
    another connection until the block ends: the processor's writes wait meanwhile."""
    from django.db import connection, transaction

    locked, release, done = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with transaction.atomic():
                if connection.vendor == "postgresql":
                    with connection.cursor() as cursor:
                        cursor.execute(
                            "LOCK TABLE forkview_traces, forkview_spans IN ACCESS EXCLUSIVE MODE"
                        )
                else:  # IMMEDIATE transactions: BEGIN took the write lock
                    AgentTrace.objects.filter(trace_id="-").delete()
                locked.set()
                release.wait(60)
        except BaseException as exc:  # pragma: no cover  (reported below)
            errors.append(exc)
            locked.set()
        finally:
            connection.close()
            done.set()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert locked.wait(30)
    try:
        yield
    finally:
        release.set()
        done.wait(30)
        assert not errors, errors


async def db(fn: Callable[[], Any]) -> Any:
    return await sync_to_async(fn)()


def trace_rows() -> list[AgentTrace]:
    return list(AgentTrace.objects.order_by("started_at"))


def span_rows(trace_id: str | None = None) -> list[AgentSpan]:
    spans = AgentSpan.objects.order_by("started_at", "span_id")
    return list(spans.filter(trace_id=trace_id) if trace_id else spans)


# ---- The Runner: tools, a failing tool, a handoff; the tree; model and usage ----------------


@pytest.mark.asyncio
async def test_run_with_tools_a_failing_tool_and_a_handoff(install):
    processor = install(include_model_data=True, include_tool_data=True)
    counter = Counter()
    set_trace_processors([processor, counter])
    session = DjangoSession(session_id="traced")
    triage, model = agents_with_handoff()

    config = await session.run_config(workflow_name="Weather desk")
    result = await Runner.run(triage, "Weather in Paris?", session=session, run_config=config)
    assert result.final_output == "Sunny."
    model.inner.assert_complete()
    processor.force_flush()

    (row,) = await db(trace_rows)
    assert row.trace_id == counter.traces[0]
    assert row.workflow_name == "Weather desk"
    assert (row.group_id, row.session_id, row.branch_id, row.turn) == (
        "traced",
        "traced",
        "main",
        1,
    )
    assert row.started_at <= row.ended_at
    spans = await db(lambda: span_rows(row.trace_id))
    assert sorted(s.span_id for s in spans) == sorted(counter.spans)  # every span, once
    by_id = {s.span_id: s for s in spans}
    kinds = [s.kind for s in spans]
    assert kinds.count("agent") == 2
    assert kinds.count("response") == 3
    assert kinds.count("handoff") == 1
    assert sorted(s.name for s in spans if s.kind == "function") == ["explode", "get_weather"]

    # The tree: every parent is a span of this trace; tools and model calls sit under an agent.
    def ancestors(span: AgentSpan) -> list[AgentSpan]:
        chain = []
        while span.parent_id is not None:
            span = by_id[span.parent_id]
            chain.append(span)
        return chain

    agents = {s.name: s for s in spans if s.kind == "agent"}
    assert set(agents) == {"triage", "expert"}
    for span in spans:
        assert span.started_at <= span.ended_at
        assert span.duration_ms == pytest.approx(
            (span.ended_at - span.started_at).total_seconds() * 1000
        )
        if span.kind in ("function", "handoff"):
            assert agents["triage"] in ancestors(span)
    responses = [s for s in spans if s.kind == "response"]
    assert [agents["triage"] in ancestors(s) for s in responses] == [True, True, False]
    assert agents["expert"] in ancestors(responses[2])
    (hand,) = [s for s in spans if s.kind == "handoff"]
    assert hand.name == "triage → expert"
    assert hand.data["to_agent"] == "expert"

    # Model and usage per response, cached input and reasoning included.
    assert [
        (s.model, s.input_tokens, s.output_tokens, s.cached_input_tokens, s.reasoning_tokens)
        for s in responses
    ] == [
        (MODEL_NAME, 100, 10, 20, 4),
        (MODEL_NAME, 130, 8, 100, 0),
        (MODEL_NAME, 150, 5, 0, 2),
    ]
    assert responses[0].data["usage"]["input_tokens"] == 100
    # The failing tool: its error recorded, the run went on.
    (failed,) = [s for s in spans if s.name == "explode"]
    assert failed.error is not None and failed.error["message"]
    assert failed.error["data"]["tool_name"] == "explode"  # its details: the SDK's to redact
    (ok,) = [s for s in spans if s.name == "get_weather"]
    assert ok.error is None
    stats = processor.stats
    assert stats["dropped"] == 0 and stats["failed_batches"] == 0 and stats["queued"] == 0


@pytest.mark.asyncio
async def test_linking_follows_turns_and_branches(install):
    processor = install()
    session = DjangoSession(session_id="linked")
    for answer in ("One.", "Two."):
        await Runner.run(
            one_tool_agent(answer), "Hi", session=session, run_config=await session.run_config()
        )
    await session.create_branch_from_turn(2, "alt")  # alt holds turn 1; its next run is turn 2
    assert await session.trace_metadata() == {
        "forkview_session": "linked",
        "forkview_branch": "alt",
        "forkview_turn": "2",
    }
    config = await session.run_config(trace_metadata={"team": "x"}, workflow_name="W")
    assert config.group_id == "linked" and config.workflow_name == "W"
    assert config.trace_metadata is not None and config.trace_metadata["team"] == "x"
    await Runner.run(one_tool_agent(), "Again", session=session, run_config=config)
    processor.force_flush()

    rows = await db(trace_rows)
    assert [(r.session_id, r.branch_id, r.turn) for r in rows] == [
        ("linked", "main", 1),
        ("linked", "main", 2),
        ("linked", "alt", 2),
    ]
    assert rows[2].metadata["team"] == "x"


@pytest.mark.asyncio
async def test_fallback_links_by_group_id_to_the_turn_the_run_added(install):
    processor = install(schedule_delay=0.05)
    session = DjangoSession(session_id="grouped")
    await Runner.run(one_tool_agent(), "First", session=session)  # not traced here: no group
    await session.create_branch_from_turn(1, "b2")
    await Runner.run(
        one_tool_agent(), "Second", session=session, run_config=RunConfig(group_id="grouped")
    )
    await Runner.run(one_tool_agent(), "Elsewhere", run_config=RunConfig(group_id="no-session"))
    processor.force_flush()

    rows = {r.group_id: r for r in await db(trace_rows)}
    assert (rows["grouped"].session_id, rows["grouped"].branch_id, rows["grouped"].turn) == (
        "grouped",
        "b2",
        1,  # b2 was created from turn 1 (empty); the run added its turn 1
    )
    assert (rows["no-session"].session_id, rows["no-session"].turn) == (None, None)


# ---- The data policy ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_data_policy_on_stores_arguments_and_outputs(install):
    processor = install(include_model_data=True, include_tool_data=True)
    triage, _ = agents_with_handoff()
    await Runner.run(triage, "Weather in Paris?")
    weird = Agent(
        name="weird",
        model=TracedModel(
            [
                ModelStep(output=[function_call("odd_text", {}, call_id="c9")]),
                ModelStep(output=[assistant_message("ok")]),
            ]
        ),
        tools=[odd_text],
    )
    await Runner.run(weird, "odd")
    processor.force_flush()

    spans = await db(span_rows)
    (weather,) = [s for s in spans if s.name == "get_weather"]
    assert json.loads(weather.data["input"]) == {"city": "Paris"}
    assert weather.data["output"] == "Sunny in Paris"
    (failed,) = [s for s in spans if s.name == "explode"]
    assert "secret-arg" in failed.data["input"]
    assert "data" in failed.error
    response = next(s for s in spans if s.kind == "response")
    assert response.data["output"][0]["name"] == "get_weather"
    assert "input" not in response.data  # model inputs are never stored
    (odd,) = [s for s in spans if s.name == "odd_text"]
    assert odd.data["output"] == "ab?c"  # NUL removed, the lone surrogate replaced


@pytest.mark.asyncio
async def test_data_policy_off_withholds_arguments_and_outputs(install):
    processor = install(include_model_data=False, include_tool_data=False)
    triage, _ = agents_with_handoff()
    await Runner.run(triage, "Weather in Paris?")
    processor.force_flush()

    spans = await db(span_rows)
    stored = json.dumps([[s.data, s.error] for s in spans])
    assert "Paris" not in stored and "secret-arg" not in stored and "Sunny" not in stored
    for span in spans:
        if span.kind == "function":
            assert "input" not in span.data and "output" not in span.data
            assert span.data["withheld"] is True
    (failed,) = [s for s in spans if s.name == "explode"]
    assert failed.error == {"message": failed.error["message"]}  # the message, no details
    responses = [s for s in spans if s.kind == "response"]
    assert [s.model for s in responses] == [MODEL_NAME] * 3  # metadata is not withheld
    assert [s.input_tokens for s in responses] == [100, 130, 150]
    assert all("output" not in s.data for s in responses)


def test_data_policy_defaults_follow_the_sdk_environment(monkeypatch):
    from agents import _debug

    monkeypatch.delenv("OPENAI_AGENTS_TRACE_INCLUDE_SENSITIVE_DATA", raising=False)
    monkeypatch.setattr(_debug, "DONT_LOG_MODEL_DATA", True)  # the SDK's default
    monkeypatch.setattr(_debug, "DONT_LOG_TOOL_DATA", True)
    processor = ForkviewTracingProcessor()
    assert (processor.include_model_data, processor.include_tool_data) == (False, False)
    monkeypatch.setattr(_debug, "DONT_LOG_TOOL_DATA", False)
    processor = ForkviewTracingProcessor()
    assert (processor.include_model_data, processor.include_tool_data) == (False, True)
    monkeypatch.setattr(_debug, "DONT_LOG_MODEL_DATA", False)
    monkeypatch.setenv("OPENAI_AGENTS_TRACE_INCLUDE_SENSITIVE_DATA", "false")
    processor = ForkviewTracingProcessor()
    assert (processor.include_model_data, processor.include_tool_data) == (False, False)


@pytest.mark.asyncio
async def test_a_run_without_sensitive_data_stores_usage_but_no_contents(install):
    processor = install(include_model_data=True, include_tool_data=True)
    triage, _ = agents_with_handoff()
    await Runner.run(
        triage, "Weather in Paris?", run_config=RunConfig(trace_include_sensitive_data=False)
    )
    processor.force_flush()

    spans = await db(span_rows)
    stored = json.dumps([s.data for s in spans])
    assert "Paris" not in stored and "secret-arg" not in stored
    responses = [s for s in spans if s.kind == "response"]
    # The SDK withholds the Response (and with it the model's name); usage stays.
    assert [(s.model, s.input_tokens, s.cached_input_tokens) for s in responses] == [
        (None, 100, 20),
        (None, 130, 100),
        (None, 150, 0),
    ]


# ---- Load, a full queue, shutdown, a failing database -----------------------------------------


@pytest.mark.asyncio
async def test_fifty_concurrent_runs_lose_nothing_and_never_wait_for_the_database(install):
    processor = Timed(schedule_delay=0.05)
    counter = Counter()
    install(processor, counter)

    async def one(i: int) -> Any:
        return await Runner.run(
            one_tool_agent(f"answer {i}"), f"q{i}", run_config=RunConfig(group_id=f"g{i}")
        )

    # The database refuses writes while the runs go on: they must not wait for it.
    with write_lock_held():
        started = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(50)))
        elapsed = time.perf_counter() - started
        # All 50 runs finished while the database still refused every write.
        assert processor.stats["written_spans"] == 0
    assert [r.final_output for r in results] == [f"answer {i}" for i in range(50)]
    assert elapsed < 10
    assert processor.longest < 0.25, processor.longest  # a put on a queue (and a busy CPU)
    processor.force_flush()

    traces = await db(trace_rows)
    spans = await db(span_rows)
    assert sorted(t.trace_id for t in traces) == sorted(counter.traces)
    assert len(traces) == 50 and all(t.ended_at is not None for t in traces)
    assert sorted(s.span_id for s in spans) == sorted(counter.spans)
    assert processor.stats["dropped"] == 0


@pytest.mark.asyncio
async def test_a_full_queue_drops_counts_and_logs(install, caplog):
    processor = ForkviewTracingProcessor(max_queue_size=4, max_batch_size=2, schedule_delay=0.01)
    counter = Counter()
    install(processor, counter)
    caplog.set_level(logging.WARNING, logger="conversations.tracing")
    with write_lock_held():  # the worker's first batch waits; the queue fills up
        for i in range(3):
            await Runner.run(one_tool_agent(), f"q{i}")
        dropped = processor.stats["dropped"]
    processor.force_flush()

    spans = await db(span_rows)
    emitted = len(counter.spans) + 2 * len(counter.traces)  # each trace: a start and an end
    assert dropped > 0
    assert processor.stats["dropped"] == dropped  # nothing dropped once the lock went
    assert len(spans) < len(counter.spans)
    # At most a batch in the worker's hands plus a full queue got through.
    assert emitted - dropped <= 2 + 4
    assert set(s.span_id for s in spans) <= set(counter.spans)
    assert "dropped" in caplog.text and "queue full" in caplog.text


@pytest.mark.asyncio
async def test_shutdown_flushes_and_is_idempotent(install):
    processor = install(schedule_delay=60)  # no scheduled flush during the test
    counter = Counter()
    set_trace_processors([processor, counter])
    await Runner.run(one_tool_agent(), "q")
    assert processor.stats["queued"] > 0
    processor.shutdown()
    processor.shutdown()
    assert processor._thread is not None and not processor._thread.is_alive()
    spans = await db(span_rows)
    assert sorted(s.span_id for s in spans) == sorted(counter.spans)
    assert len(await db(trace_rows)) == 1


@pytest.mark.asyncio
async def test_a_failing_database_never_breaks_the_run(install, caplog):
    processor = install(using="no_such_alias", schedule_delay=0.01)
    caplog.set_level(logging.ERROR, logger="conversations.tracing")
    result = await Runner.run(one_tool_agent("still fine"), "q")
    assert result.final_output == "still fine"
    processor.force_flush()
    stats = processor.stats
    assert stats["failed_batches"] >= 2  # tried, retried once
    assert stats["dropped"] > 0 and stats["written_spans"] == 0
    assert "writing" in caplog.text


@pytest.mark.asyncio
async def test_a_span_written_twice_is_stored_once(install):
    processor = install()
    with trace("twice") as t:
        with custom_span("mine", {"k": 1}, span_id="span_fixed_id_000000000001") as span:
            pass
    processor.on_span_end(span)  # again, as a retry would
    processor.force_flush()
    processor.on_span_end(span)  # and in a later batch
    processor.force_flush()
    spans = await db(span_rows)
    assert [(s.span_id, s.kind, s.name, s.data["data"]) for s in spans] == [
        ("span_fixed_id_000000000001", "custom", "mine", {"k": 1})
    ]
    assert (await db(trace_rows))[0].trace_id == t.trace_id


def test_a_forked_child_starts_with_a_fresh_queue_and_worker(install):
    processor = install(schedule_delay=60)
    with trace("before fork"), custom_span("queued"):
        pass
    assert processor.stats["queued"] == 3 and processor._thread is not None
    pid = os.fork()
    if pid == 0:  # the child: the parent's queue and worker are not its own
        ok = processor._thread is None and processor.stats["queued"] == 0
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert processor.stats["queued"] == 3  # the parent's, untouched


# ---- Two processes ------------------------------------------------------------------------------


def test_two_processes_write_into_one_database():
    from django.db import connection

    from tests.support.databases import database_url

    url = database_url(connection.settings_dict)
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "dashboard.settings"}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    procs = []
    for tag in ("p1", "p2"):
        stderr = tempfile.TemporaryFile(mode="w+")
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.conversations.test_tracing", "20", tag],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        procs.append((proc, stderr))
    reports = []
    for proc, stderr in procs:
        out, _ = proc.communicate(timeout=240)
        stderr.seek(0)
        assert proc.returncode == 0, stderr.read()
        stderr.close()
        reports.append(json.loads(out.strip().splitlines()[-1]))

    traces = trace_rows()
    spans = span_rows()
    for report in reports:
        assert report["stats"]["dropped"] == 0 and report["stats"]["failed_batches"] == 0
        assert len([t for t in traces if t.workflow_name == report["tag"]]) == 20 + 1
    assert sorted(t.trace_id for t in traces) == sorted(sum((r["traces"] for r in reports), []))
    # The shared span (same id from both processes) once; every other span once.
    shared = [s for s in spans if s.span_id == SHARED_SPAN]
    assert len(shared) == 1
    assert len(spans) == sum(r["spans"] for r in reports) - 1


SHARED_SPAN = "span_shared_by_two_processes"


async def _worker(runs: int, tag: str) -> dict[str, Any]:
    processor = ForkviewTracingProcessor(schedule_delay=0.05, max_batch_size=16)
    counter = Counter()
    set_trace_processors([processor, counter])
    for i in range(runs):
        await Runner.run(
            one_tool_agent(f"{tag} {i}"), f"q{i}", run_config=RunConfig(workflow_name=tag)
        )
    with trace(tag):
        with custom_span("shared", span_id=SHARED_SPAN):
            pass
    processor.shutdown()
    return {
        "tag": tag,
        "traces": counter.traces,
        "spans": len(counter.spans),
        "stats": processor.stats,
    }


def _worker_main() -> None:
    runs, tag = int(sys.argv[1]), sys.argv[2]
    print(json.dumps(asyncio.run(_worker(runs, tag))), flush=True)


if __name__ == "__main__":
    _worker_main()
