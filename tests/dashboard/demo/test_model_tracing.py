"""The offline demo model traces like ``OpenAIResponsesModel``: a response span per call with
its model name and usage, so the demo's and the live chat's traces say which model answered."""

from __future__ import annotations

from typing import Any

import pytest
from agents import Agent, RunConfig, Runner, set_trace_processors
from agents.tracing import Span, Trace, TracingProcessor, get_trace_provider

from conversations.tracing import ForkviewTracingProcessor
from dashboard.demo.model import MODEL_NAME, OfflineModel
from dashboard.demo.tools import calculate as calculator


class Collect(TracingProcessor):
    """A real SDK processor that keeps the finished spans."""

    def __init__(self) -> None:
        self.spans: list[Span[Any]] = []

    def on_trace_start(self, trace: Trace) -> None:
        pass

    def on_trace_end(self, trace: Trace) -> None:
        pass

    def on_span_start(self, span: Span[Any]) -> None:
        pass

    def on_span_end(self, span: Span[Any]) -> None:
        self.spans.append(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


@pytest.fixture
def collected():
    """Only :class:`Collect` receives spans during the test; everything restored after."""
    provider = get_trace_provider()
    multi = getattr(provider, "_multi_processor")  # noqa: B009  (the SDK has no getter)
    saved = list(multi._processors)
    was_disabled = getattr(provider, "_disabled", False)
    provider.set_disabled(False)
    processor = Collect()
    set_trace_processors([processor])
    try:
        yield processor
    finally:
        set_trace_processors(saved)
        provider.set_disabled(was_disabled)


def _responses(processor: Collect) -> list[Span[Any]]:
    return [s for s in processor.spans if s.span_data.type == "response"]


@pytest.mark.asyncio
@pytest.mark.parametrize("sensitive", [True, False])
async def test_each_call_is_a_response_span_with_the_model_name(collected, sensitive):
    agent = Agent(name="demo", model=OfflineModel(), tools=[calculator])
    config = RunConfig(trace_include_sensitive_data=sensitive)
    result = await Runner.run(agent, "calculate 2+2*3", run_config=config)
    assert result.final_output
    responses = _responses(collected)
    assert len(responses) == 2  # the tool call, then the answer
    processor = ForkviewTracingProcessor(include_model_data=True)
    rows = [processor.span_row(span) for span in responses]
    assert [row.model for row in rows] == [MODEL_NAME, MODEL_NAME]
    assert all(row.input_tokens and row.output_tokens for row in rows)
    # Without the run's sensitive data: the model name and usage, never the output.
    outputs = [span.span_data.response.output for span in responses]
    assert all(outputs) if sensitive else not any(outputs)


@pytest.mark.asyncio
async def test_a_streamed_run_records_its_model_and_usage_too(collected):
    agent = Agent(name="demo", model=OfflineModel(), tools=[calculator])
    result = Runner.run_streamed(agent, "calculate 2+2*3")
    async for _ in result.stream_events():
        pass
    responses = _responses(collected)
    assert len(responses) == 2
    rows = [ForkviewTracingProcessor().span_row(span) for span in responses]
    assert {row.model for row in rows} == {MODEL_NAME}
    assert sum(row.output_tokens or 0 for row in rows) == result.context_wrapper.usage.output_tokens


@pytest.mark.asyncio
async def test_tracing_disabled_records_nothing_and_still_answers(collected):
    agent = Agent(name="demo", model=OfflineModel(), tools=[calculator])
    config = RunConfig(tracing_disabled=True)
    result = await Runner.run(agent, "calculate 2+2*3", run_config=config)
    assert result.final_output and not collected.spans
