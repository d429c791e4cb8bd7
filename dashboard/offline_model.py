"""The offline demo model: a real ``agents.Model`` that needs no network and no key.

Forkview runs it when neither ``OPENAI_API_KEY`` nor ``OPENAI_BASE_URL`` is set, so the live
chat works out of the box. It is deterministic (same conversation in, same answer out), streams
its answer token by token as genuine Responses-API stream events, calls the demo tools when a
message asks for them, and reports token usage with a simple, stable count.

Usage::

    from agents import Agent, Runner
    from dashboard.offline_model import OfflineModel

    agent = Agent(name="demo", model=OfflineModel(token_delay=0), tools=[...])
    result = Runner.run_streamed(agent, "calculate 2+2*3")

What it understands (case-insensitive), when the agent has the matching tool:

- "what time is it" / "current time" / "what's the date"   -> ``current_time``
- "calculate 2+2*3" / "compute (1+2)**3" / "what is 7*6"    -> ``calculate``
- "search sessions for refund" / "find sessions about X"     -> ``search_sessions``

After a tool call it answers from the tool's output. Anything else gets a short, fixed reply.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from agents.items import ModelResponse, TResponseInputItem, TResponseStreamEvent
from agents.models.interface import Model, ModelTracing
from agents.usage import Usage
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseFunctionToolCall,
    ResponseInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    ResponseUsage,
)
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

__all__ = ["OFFLINE_LABEL", "OfflineModel", "count_tokens", "tokenize"]

OFFLINE_LABEL = "offline demo model"
MODEL_NAME = "forkview-offline-demo"

# A "token" is a run of word characters or one other non-space character, with the spaces
# before it. Joining the tokens gives back the text exactly, so deltas concatenate to it.
_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s])|\s+$")

_TIME = re.compile(
    r"\b(what time|current time|time is it|the time|what'?s the date|today'?s date)\b"
)
_CALC = re.compile(
    r"\b(?:calculate|calc|compute|evaluate|what is|what's)\s+([-+*/%().\d\s^e]+?)\s*[?.!]*$"
)
# "weather in Lisbon?", "what's the weather like for São Paulo": the city is what follows.
_WEATHER = re.compile(r"\bweather\b.*?\b(?:in|for|at)\s+([^?.!]+?)\s*[?.!]*$", re.IGNORECASE)
_SEARCH = re.compile(
    r"\b(?:search|find|look up)\s+(?:my\s+|past\s+|the\s+|old\s+)*"
    r"(?:sessions?|conversations?|chats?)\s+(?:for|about|with|mentioning)\s+(.+?)\s*[?.!]*$"
)

HELP = (
    "I'm the offline demo model: deterministic, no network, no API key. "
    'Try "what time is it", "calculate 2+2*3", "weather in Lisbon" or '
    '"search sessions for refund". '
    "Set OPENAI_API_KEY or OPENAI_BASE_URL to talk to a real model."
)


def tokenize(text: str) -> list[str]:
    """Split text into the offline model's tokens (they concatenate back to ``text``)."""
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    """How many tokens ``text`` costs, by the offline model's count."""
    return sum(1 for token in _TOKEN.findall(text) if token.strip())


def _text_of(content: Any) -> str:
    """The text of a message's ``content`` (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text") or part.get("refusal") or "")
            for part in content
            if isinstance(part, dict)
        )
    return ""


def _input_text(system_instructions: str | None, items: list[Any]) -> str:
    """Everything the model reads, as one string (for the input token count)."""
    parts = [system_instructions or ""]
    for item in items:
        if not isinstance(item, dict):
            continue
        if "content" in item:
            parts.append(_text_of(item["content"]))
        for key in ("name", "arguments", "output"):
            value = item.get(key)
            if isinstance(value, str):
                parts.append(value)
    return " ".join(parts)


def token_usage(
    input_tokens: int, output_tokens: int, *, cached: int = 0, reasoning: int = 0, requests: int = 1
) -> Usage:
    """One run's ``Usage`` as a real backend reports it (total = input + output)."""
    return Usage(
        requests=requests,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
        input_tokens_details=InputTokensDetails(cached_tokens=cached, cache_write_tokens=0),
        output_tokens_details=OutputTokensDetails(reasoning_tokens=reasoning),
    )


class OfflineModel(Model):
    """Deterministic, token-streaming, tool-calling demo model (no network)."""

    label = OFFLINE_LABEL

    def __init__(self, *, token_delay: float = 0.0) -> None:
        """Args:
        token_delay: Seconds to wait before each streamed token (0 streams as fast as the
            event loop allows; the demo uses a few milliseconds so streaming is visible).
        """
        self.token_delay = token_delay
        self.model = MODEL_NAME

    # ---- Model interface -------------------------------------------------------------------

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: Any,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: Any = None,
    ) -> ModelResponse:
        items = self._items(input)
        output, usage = self._plan(system_instructions, items, tools)
        return ModelResponse(output=output, usage=usage, response_id=self._response_id(items))

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: Any,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: Any = None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        items = self._items(input)
        output, usage = self._plan(system_instructions, items, tools)
        response_id = self._response_id(items)
        seq = _Counter()
        pending = self._response(response_id, [], None, status="in_progress")
        yield ResponseCreatedEvent(type="response.created", response=pending, sequence_number=seq())
        yield ResponseInProgressEvent(
            type="response.in_progress", response=pending, sequence_number=seq()
        )
        for index, item in enumerate(output):
            if isinstance(item, ResponseOutputMessage):
                async for event in self._stream_message(item, index, seq):
                    yield event
            else:
                async for event in self._stream_call(item, index, seq):
                    yield event
        yield ResponseCompletedEvent(
            type="response.completed",
            response=self._response(response_id, output, usage),
            sequence_number=seq(),
        )

    # ---- Streaming helpers -------------------------------------------------------------------

    async def _pause(self) -> None:
        # Yield to the loop even without a delay: a real stream never arrives in one piece.
        await asyncio.sleep(self.token_delay)

    async def _stream_message(
        self, item: ResponseOutputMessage, index: int, seq: _Counter
    ) -> AsyncIterator[TResponseStreamEvent]:
        text = item.content[0].text  # type: ignore[union-attr]
        yield ResponseOutputItemAddedEvent(
            type="response.output_item.added",
            item=item.model_copy(update={"content": [], "status": "in_progress"}),
            output_index=index,
            sequence_number=seq(),
        )
        part = {"item_id": item.id, "output_index": index, "content_index": 0}
        yield ResponseContentPartAddedEvent(
            type="response.content_part.added",
            part=ResponseOutputText(type="output_text", text="", annotations=[], logprobs=[]),
            sequence_number=seq(),
            **part,
        )
        for token in tokenize(text):
            await self._pause()
            yield ResponseTextDeltaEvent(
                type="response.output_text.delta",
                delta=token,
                logprobs=[],
                sequence_number=seq(),
                **part,
            )
        yield ResponseTextDoneEvent(
            type="response.output_text.done", text=text, logprobs=[], sequence_number=seq(), **part
        )
        yield ResponseContentPartDoneEvent(
            type="response.content_part.done", part=item.content[0], sequence_number=seq(), **part
        )
        yield ResponseOutputItemDoneEvent(
            type="response.output_item.done", item=item, output_index=index, sequence_number=seq()
        )

    async def _stream_call(
        self, item: ResponseFunctionToolCall, index: int, seq: _Counter
    ) -> AsyncIterator[TResponseStreamEvent]:
        yield ResponseOutputItemAddedEvent(
            type="response.output_item.added",
            item=item.model_copy(update={"arguments": "", "status": "in_progress"}),
            output_index=index,
            sequence_number=seq(),
        )
        for token in tokenize(item.arguments):
            await self._pause()
            yield ResponseFunctionCallArgumentsDeltaEvent(
                type="response.function_call_arguments.delta",
                item_id=item.id or item.call_id,
                output_index=index,
                delta=token,
                sequence_number=seq(),
            )
        yield ResponseFunctionCallArgumentsDoneEvent.model_validate(
            {
                "type": "response.function_call_arguments.done",
                "item_id": item.id or item.call_id,
                "output_index": index,
                "arguments": item.arguments,
                "name": item.name,
                "sequence_number": seq(),
            }
        )
        yield ResponseOutputItemDoneEvent(
            type="response.output_item.done", item=item, output_index=index, sequence_number=seq()
        )

    @staticmethod
    def _response(
        response_id: str, output: list[Any], usage: Usage | None, *, status: str = "completed"
    ) -> Response:
        return Response(
            id=response_id,
            created_at=0,
            model=MODEL_NAME,
            object="response",
            output=output,
            tool_choice="auto",
            tools=[],
            top_p=None,
            parallel_tool_calls=False,
            status=status,  # type: ignore[arg-type]
            usage=(
                ResponseUsage(
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    total_tokens=usage.total_tokens,
                    input_tokens_details=InputTokensDetails.model_validate(
                        {"cached_tokens": 0, "cache_write_tokens": 0}
                    ),
                    output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
                )
                if usage is not None
                else None
            ),
        )

    # ---- The "thinking" ----------------------------------------------------------------------

    @staticmethod
    def _items(input: str | list[TResponseInputItem]) -> list[Any]:
        if isinstance(input, str):
            return [{"role": "user", "content": input}]
        return list(input)

    @staticmethod
    def _response_id(items: list[Any]) -> str:
        return f"resp_offline_{len(items)}"

    def _plan(
        self, system_instructions: str | None, items: list[Any], tools: list[Any]
    ) -> tuple[list[Any], Usage]:
        """Decide the output (one tool call, or one message) and its usage."""
        last_user = max((i for i, item in enumerate(items) if _is_user(item)), default=None)
        user_text = _text_of(items[last_user]["content"]) if last_user is not None else ""
        since_user = items[last_user + 1 :] if last_user is not None else items
        outputs = [
            item
            for item in since_user
            if isinstance(item, dict) and item.get("type") == "function_call_output"
        ]
        turn = sum(1 for item in items if _is_user(item))
        tool_names = {getattr(tool, "name", None) for tool in tools}
        output: list[Any]
        if outputs:
            output = [self._message(self._answer_from_outputs(since_user), turn)]
        else:
            call = _tool_request(user_text, tool_names)
            if call is not None:
                name, arguments = call
                output = [
                    ResponseFunctionToolCall(
                        id=f"fc_offline_{turn}_{len(items)}",
                        call_id=f"call_offline_{turn}_{len(items)}",
                        type="function_call",
                        name=name,
                        arguments=json.dumps(arguments),
                        status="completed",
                    )
                ]
            else:
                output = [self._message(_small_talk(user_text), turn)]
        input_tokens = count_tokens(_input_text(system_instructions, items))
        produced = " ".join(
            item.content[0].text if isinstance(item, ResponseOutputMessage) else item.arguments
            for item in output
        )
        output_tokens = count_tokens(produced)
        return output, token_usage(input_tokens, output_tokens)

    @staticmethod
    def _message(text: str, turn: int) -> ResponseOutputMessage:
        return ResponseOutputMessage(
            id=f"msg_offline_{turn}_{count_tokens(text)}",
            type="message",
            role="assistant",
            status="completed",
            content=[
                ResponseOutputText(type="output_text", text=text, annotations=[], logprobs=[])
            ],
        )

    @staticmethod
    def _answer_from_outputs(since_user: list[Any]) -> str:
        calls = {
            item.get("call_id"): item
            for item in since_user
            if isinstance(item, dict) and item.get("type") == "function_call"
        }
        lines = []
        for item in since_user:
            if not isinstance(item, dict) or item.get("type") != "function_call_output":
                continue
            call = calls.get(item.get("call_id"), {})
            name = call.get("name", "the tool")
            output = item.get("output")
            text = output if isinstance(output, str) else _text_of(output) or json.dumps(output)
            lines.append(_phrase(name, call.get("arguments", "{}"), text))
        return " ".join(lines)


class _Counter:
    """Stream sequence numbers: 0, 1, 2, ..."""

    def __init__(self) -> None:
        self.value = -1

    def __call__(self) -> int:
        self.value += 1
        return self.value


def _is_user(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and item.get("role") == "user"
        and item.get("type", "message") == "message"
    )


def _tool_request(text: str, tool_names: set[Any]) -> tuple[str, dict[str, Any]] | None:
    lowered = text.strip().lower()
    if "search_sessions" in tool_names and (match := _SEARCH.search(lowered)):
        query = text.strip()[match.start(1) : match.end(1)].strip().strip("\"'")
        return "search_sessions", {"query": query}
    if "calculate" in tool_names and (match := _CALC.search(lowered)):
        expression = match.group(1).strip()
        if re.search(r"\d", expression):
            return "calculate", {"expression": expression}
    if "current_time" in tool_names and _TIME.search(lowered):
        return "current_time", {}
    if "get_weather" in tool_names and (match := _WEATHER.search(text.strip())):
        city = match.group(1).strip().strip("\"'")
        if city:
            return "get_weather", {"city": city}
    return None


def _mapping(output: str) -> dict[str, Any] | None:
    """A tool's JSON-object output, or ``None``."""
    try:
        value = json.loads(output)
    except (ValueError, TypeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _phrase(name: str, arguments: str, output: str) -> str:
    try:
        args = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        args = {}
    if name == "current_time":
        return f"The current time is {output}."
    if name == "calculate":
        return f"{args.get('expression', 'That')} = {output}."
    if name == "search_sessions":
        return f'Search results for "{args.get("query", "")}": {output}'
    if name == "get_weather" and (report := _mapping(output)):
        unit = "°F" if report.get("unit") == "fahrenheit" else "°C"
        return (
            f"{report.get('city', args.get('city', 'There'))}: {report.get('temperature')}{unit}, "
            f"{report.get('conditions')}, humidity {report.get('humidity')}%."
        )
    return f"{name} returned: {output}"


def _small_talk(text: str) -> str:
    cleaned = " ".join(text.split())
    if not cleaned:
        return HELP
    if len(cleaned) > 80:
        cleaned = cleaned[:77] + "..."
    return f'You said: "{cleaned}". {HELP}'
