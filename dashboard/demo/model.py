"""The offline demo model: a real ``agents.Model`` that needs no network and no key.

Forkview runs it when neither ``OPENAI_API_KEY`` nor ``OPENAI_BASE_URL`` is set, so the live
chat works out of the box. It is deterministic (same conversation in, same answer out), streams
its answer token by token as genuine Responses-API stream events, calls the agent's tools when
a message asks for them, and reports token usage with a simple, stable count.

Usage::

    from agents import Agent, Runner
    from dashboard.demo.model import OfflineModel

    agent = Agent(name="demo", model=OfflineModel(token_delay=0), tools=[...])
    result = Runner.run_streamed(agent, "calculate 2+2*3")

How it decides what to call: only from the tools the request carries (their names and
parameter schemas); it knows no tool by name. A tool can come with an :class:`OfflineIntent`
(registered with :func:`register_intent`, as :mod:`dashboard.demo.tools` does for the demo
tools, or passed as ``OfflineModel(intents=...)``): when to call it (a user message -> the
arguments), how to phrase its output, and an example prompt for the help text; it applies
only to a tool of that name whose parameters fit. Any other function tool is called when the
message names it (``lookup order A-10442``, ``lookup_order order_id=A-10442``, or a JSON
object of arguments after the name). After a tool call it answers from the tool's output;
anything else gets a short reply with the help text.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agents import FunctionTool, Tool
from agents.items import (
    ModelResponse,
    TResponseInputItem,
    TResponseOutputItem,
    TResponseStreamEvent,
)
from agents.models.interface import Model, ModelTracing
from agents.tracing import response_span
from agents.usage import Usage, model_usage_to_span_usage
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
    ResponseStatus,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    ResponseUsage,
)
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

from conversations.items import DecodeError, content_text, decode, item_text, one_line

__all__ = [
    "OFFLINE_LABEL",
    "Arguments",
    "OfflineIntent",
    "OfflineModel",
    "count_tokens",
    "register_intent",
    "registered_intents",
    "token_usage",
    "tokenize",
]

OFFLINE_LABEL = "offline demo model"
MODEL_NAME = "forkview-offline-demo"

#: A tool call's arguments (the JSON object the model sends).
Arguments = dict[str, Any]

# A "token" is a run of word characters or one other non-space character, with the spaces
# before it. Joining the tokens gives back the text exactly, so deltas concatenate to it.
_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s])|\s+$")

_INTRO = "I'm the offline demo model: deterministic, no network, no API key. "
_OUTRO = "Set OPENAI_API_KEY or OPENAI_BASE_URL to talk to a real model."


def tokenize(text: str) -> list[str]:
    """Split text into the offline model's tokens (they concatenate back to ``text``)."""
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    """How many tokens ``text`` costs, by the offline model's count."""
    return sum(1 for token in _TOKEN.findall(text) if token.strip())


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


# ---- Intents: when to call a tool, and how to say what it returned ----------------------------


@dataclass(frozen=True)
class OfflineIntent:
    """What the offline model understands about one tool (by the tool's name).

    Attributes:
        tool: The tool's name; the intent applies only when the request carries a function
            tool of that name whose parameters fit ``parameters``.
        match: A user message -> the call's arguments, or ``None`` when it does not ask for it.
        parameters: The argument names ``match`` may return (a tool of the same name with
            other parameters is someone else's tool: the intent leaves it alone).
        answer: (arguments, the tool's output text) -> the reply, or ``None`` for the plain
            ``<tool> returned: <output>``.
        example: A message that triggers it, suggested by the help text.
        priority: Lower is tried first (when one message could trigger two tools).
    """

    tool: str
    match: Callable[[str], Arguments | None]
    parameters: tuple[str, ...] = ()
    answer: Callable[[Arguments, str], str | None] | None = None
    example: str = ""
    priority: int = 100


_INTENTS: dict[str, OfflineIntent] = {}


def register_intent(intent: OfflineIntent) -> OfflineIntent:
    """Make ``intent`` known to every :class:`OfflineModel` that is not given its own list."""
    _INTENTS[intent.tool] = intent
    return intent


def registered_intents() -> tuple[OfflineIntent, ...]:
    """The registered intents, in registration order."""
    return tuple(_INTENTS.values())


def _schema(tool: FunctionTool) -> tuple[Mapping[str, Any], set[str]]:
    """(the tool's parameter properties, the names it cannot do without)."""
    schema = tool.params_json_schema or {}
    properties = schema.get("properties") or {}
    # Strict schemas list every parameter as required; those with a default are optional.
    needed = {
        name
        for name in schema.get("required") or ()
        if not (isinstance(properties.get(name), dict) and "default" in properties[name])
    }
    return properties, needed


def _accepts(tool: FunctionTool, names: Iterable[str]) -> bool:
    """Whether ``tool`` takes arguments of these names (and needs no others)."""
    properties, needed = _schema(tool)
    given = set(names)
    return needed <= given and (not properties or given <= properties.keys())


_PAIR = re.compile(r"""(\w+)\s*[=:]\s*("[^"]*"|'[^']*'|[^\s,;]+)""")
_LEAD = re.compile(r"^(?:\s*(?:(?:with|for|about|on|of|using)\b|[:,-]))+\s*", re.IGNORECASE)
_TYPES: dict[str, Callable[[str], Any]] = {
    "integer": int,
    "number": float,
    "boolean": lambda text: {"true": True, "false": False}[text.lower()],
}


def _coerce(value: str, spec: Any) -> Any:
    convert = _TYPES.get(spec.get("type", "")) if isinstance(spec, dict) else None
    if convert is None:
        return value
    try:
        return convert(value)
    except (ValueError, KeyError):
        return value


def _named_call(text: str, tool: FunctionTool) -> Arguments | None:
    """The arguments when ``text`` names ``tool`` (``lookup order A-1``, ``lookup_order
    order_id=A-1`` or a JSON object after the name); ``None`` if it does not name it."""
    spoken = r"[\s_-]+".join(map(re.escape, re.split(r"[\s_-]+", tool.name)))
    mention = re.search(rf"(?<!\w){spoken}(?!\w)", text, re.IGNORECASE)
    if mention is None:
        return None
    rest = text[mention.end() :].strip()
    properties, _ = _schema(tool)
    if rest.startswith("{"):
        try:
            value = decode(rest)
        except DecodeError:
            value = None
        if isinstance(value, dict):
            return value
    arguments: Arguments = {
        key: _coerce(raw.strip("\"'"), properties[key])
        for key, raw in _PAIR.findall(rest)
        if key in properties
    }
    if not arguments and len(properties) >= 1:
        value_text = _LEAD.sub("", rest).rstrip("?.!").strip().strip("\"'")
        if value_text:  # the first parameter takes the rest of the message
            first = next(iter(properties))
            arguments[first] = _coerce(value_text, properties[first])
    return arguments


def _quoted_list(examples: Sequence[str]) -> str:
    quoted = [f'"{example}"' for example in examples]
    if len(quoted) < 2:
        return "".join(quoted)
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}"


# ---- The model --------------------------------------------------------------------------------


class OfflineModel(Model):
    """Deterministic, token-streaming, tool-calling demo model (no network)."""

    label = OFFLINE_LABEL

    def __init__(
        self, *, token_delay: float = 0.0, intents: Iterable[OfflineIntent] | None = None
    ) -> None:
        """Args:
        token_delay: Seconds to wait before each streamed token (0 streams as fast as the
            event loop allows; the demo uses a few milliseconds so streaming is visible).
        intents: The intents it knows; ``None``: the registered ones (at each request).
        """
        self.token_delay = token_delay
        self.model = MODEL_NAME
        self._intents = None if intents is None else tuple(intents)

    @property
    def intents(self) -> tuple[OfflineIntent, ...]:
        """The intents this model applies (to the tools a request carries)."""
        return registered_intents() if self._intents is None else self._intents

    # ---- Model interface -------------------------------------------------------------------

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: Any,
        tools: list[Tool],
        output_schema: Any,
        handoffs: list[Any],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: Any = None,
    ) -> ModelResponse:
        items = self._items(input)
        with response_span(disabled=tracing.is_disabled()) as span:
            output, usage = self._plan(system_instructions, items, tools)
            response_id = self._response_id(items)
            self._trace(span, tracing, self._response(response_id, output, usage), usage)
        produced: list[TResponseOutputItem] = [*output]
        return ModelResponse(output=produced, usage=usage, response_id=response_id)

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: Any,
        tools: list[Tool],
        output_schema: Any,
        handoffs: list[Any],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: Any = None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        items = self._items(input)
        with response_span(disabled=tracing.is_disabled()) as span:
            output, usage = self._plan(system_instructions, items, tools)
            response_id = self._response_id(items)
            async for event in self._stream(response_id, output, usage):
                if isinstance(event, ResponseCompletedEvent):
                    # Record before the terminal event: a consumer may stop right after it.
                    self._trace(span, tracing, event.response, usage)
                yield event

    async def _stream(
        self, response_id: str, output: Sequence[_Output], usage: Usage
    ) -> AsyncIterator[TResponseStreamEvent]:
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

    @staticmethod
    def _trace(span: Any, tracing: ModelTracing, response: Response, usage: Usage) -> None:
        """Fill the response span as ``OpenAIResponsesModel`` does: usage always, and the
        ``Response`` (its model name, so a trace says which model answered). Without the run's
        sensitive data only the model name and usage go on it, never the output."""
        span.span_data.usage = model_usage_to_span_usage(usage)
        if not tracing.include_data():
            response = response.model_copy(update={"output": []})
        span.span_data.response = response

    # ---- Streaming helpers -------------------------------------------------------------------

    async def _pause(self) -> None:
        # Yield to the loop even without a delay: a real stream never arrives in one piece.
        await asyncio.sleep(self.token_delay)

    async def _stream_message(
        self, item: ResponseOutputMessage, index: int, seq: _Counter
    ) -> AsyncIterator[TResponseStreamEvent]:
        text = _message_text(item)
        yield ResponseOutputItemAddedEvent(
            type="response.output_item.added",
            item=item.model_copy(update={"content": [], "status": "in_progress"}),
            output_index=index,
            sequence_number=seq(),
        )
        yield ResponseContentPartAddedEvent(
            type="response.content_part.added",
            part=ResponseOutputText(type="output_text", text="", annotations=[], logprobs=[]),
            sequence_number=seq(),
            item_id=item.id,
            output_index=index,
            content_index=0,
        )
        for token in tokenize(text):
            await self._pause()
            yield ResponseTextDeltaEvent(
                type="response.output_text.delta",
                delta=token,
                logprobs=[],
                sequence_number=seq(),
                item_id=item.id,
                output_index=index,
                content_index=0,
            )
        yield ResponseTextDoneEvent(
            type="response.output_text.done",
            text=text,
            logprobs=[],
            sequence_number=seq(),
            item_id=item.id,
            output_index=index,
            content_index=0,
        )
        yield ResponseContentPartDoneEvent(
            type="response.content_part.done",
            part=item.content[0],
            sequence_number=seq(),
            item_id=item.id,
            output_index=index,
            content_index=0,
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
        response_id: str,
        output: Sequence[_Output],
        usage: Usage | None,
        *,
        status: ResponseStatus = "completed",
    ) -> Response:
        return Response(
            id=response_id,
            created_at=0,
            model=MODEL_NAME,
            object="response",
            output=list(output),
            tool_choice="auto",
            tools=[],
            top_p=None,
            parallel_tool_calls=False,
            status=status,
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
        self, system_instructions: str | None, items: list[Any], tools: Sequence[Tool]
    ) -> tuple[list[_Output], Usage]:
        """Decide the output (one tool call, or one message) and its usage."""
        last_user = max((i for i, item in enumerate(items) if _is_user(item)), default=None)
        user_text = content_text(items[last_user]["content"]) if last_user is not None else ""
        since_user = items[last_user + 1 :] if last_user is not None else items
        outputs = [
            item
            for item in since_user
            if isinstance(item, dict) and item.get("type") == "function_call_output"
        ]
        turn = sum(1 for item in items if _is_user(item))
        callable_tools = {tool.name: tool for tool in tools if isinstance(tool, FunctionTool)}
        output: list[_Output]
        if outputs:
            answer = self._answer_from_outputs(since_user, self._applicable(callable_tools))
            output = [self._message(answer, turn)]
        elif (call := self._tool_request(user_text, callable_tools)) is not None:
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
            output = [self._message(self._small_talk(user_text, callable_tools), turn)]
        input_tokens = count_tokens(_input_text(system_instructions, items))
        produced = " ".join(
            _message_text(item) if isinstance(item, ResponseOutputMessage) else item.arguments
            for item in output
        )
        return output, token_usage(input_tokens, count_tokens(produced))

    def _applicable(self, tools: Mapping[str, FunctionTool]) -> list[OfflineIntent]:
        """The intents whose tool the request carries (with fitting parameters), in order."""
        return [
            intent
            for intent in self.intents
            if intent.tool in tools and _accepts(tools[intent.tool], intent.parameters)
        ]

    def _tool_request(
        self, text: str, tools: Mapping[str, FunctionTool]
    ) -> tuple[str, Arguments] | None:
        """(tool name, arguments) of the call ``text`` asks for, or ``None``."""
        text = text.strip()
        applicable = self._applicable(tools)
        for intent in sorted(applicable, key=lambda intent: intent.priority):
            arguments = intent.match(text)
            if arguments is not None and _accepts(tools[intent.tool], arguments):
                return intent.tool, arguments
        understood = {intent.tool for intent in applicable}
        for name, tool in tools.items():
            if name in understood:
                continue
            arguments = _named_call(text, tool)
            if arguments is not None and _accepts(tool, arguments):
                return name, arguments
        return None

    def _small_talk(self, text: str, tools: Mapping[str, FunctionTool]) -> str:
        help_text = _INTRO
        examples = [intent.example for intent in self._applicable(tools) if intent.example]
        if examples:
            help_text += f"Try {_quoted_list(examples)}. "
        understood = {intent.tool for intent in self._applicable(tools)}
        others = [name for name in tools if name not in understood]
        if others:
            help_text += f"Name a tool to call it ({', '.join(others)}). "
        help_text += _OUTRO
        cleaned = one_line(text)
        if not cleaned:
            return help_text
        if len(cleaned) > 80:
            cleaned = cleaned[:77] + "..."
        return f'You said: "{cleaned}". {help_text}'

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
    def _answer_from_outputs(since_user: list[Any], applicable: Sequence[OfflineIntent]) -> str:
        calls = {
            item.get("call_id"): item
            for item in since_user
            if isinstance(item, dict) and item.get("type") == "function_call"
        }
        intents = {intent.tool: intent for intent in applicable}
        lines = []
        for item in since_user:
            if not isinstance(item, dict) or item.get("type") != "function_call_output":
                continue
            call = calls.get(item.get("call_id"), {})
            name = str(call.get("name", "the tool"))
            output = content_text(item.get("output"))
            intent = intents.get(name)
            answer = None
            if intent is not None and intent.answer is not None:
                answer = intent.answer(_arguments(call.get("arguments")), output)
            lines.append(answer if answer is not None else f"{name} returned: {output}")
        return " ".join(lines)


_Output = ResponseOutputMessage | ResponseFunctionToolCall


class _Counter:
    """Stream sequence numbers: 0, 1, 2, ..."""

    def __init__(self) -> None:
        self.value = -1

    def __call__(self) -> int:
        self.value += 1
        return self.value


def _message_text(item: ResponseOutputMessage) -> str:
    """The text of a message the model produced (one ``output_text`` part)."""
    return "".join(part.text for part in item.content if isinstance(part, ResponseOutputText))


def _arguments(arguments: Any) -> Arguments:
    """A call's JSON arguments as a dict (``{}`` if they do not decode to one)."""
    try:
        value = decode(arguments or "{}")
    except DecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _input_text(system_instructions: str | None, items: list[Any]) -> str:
    """Everything the model reads, as one string (for the input token count)."""
    return " ".join(
        [system_instructions or "", *(item_text(item) for item in items if isinstance(item, dict))]
    )


def _is_user(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and item.get("role") == "user"
        and item.get("type", "message") == "message"
    )
