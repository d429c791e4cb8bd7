"""``OPENAI_BASE_URL``: the demo agent against a real HTTP server speaking Chat Completions.

A small ``http.server`` thread on 127.0.0.1 answers ``POST /v1/chat/completions`` with a
streaming (SSE) response, the way Ollama, vLLM or LM Studio do; the real ``openai`` client
talks to it over real HTTP. The first request gets a ``calculate`` tool call, the second
(which carries the tool result) a streamed text answer.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import pytest_asyncio
from agents import OpenAIChatCompletionsModel
from asgiref.sync import sync_to_async
from django.db import connections

from conversations.session import DjangoSession
from dashboard.agents import backend_label, get_agent
from dashboard.chat.turns import run_turn


def _chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None):
    body = {
        "id": "chatcmpl-local",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "local-model",
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


class ChatCompletionsHandler(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        request = json.loads(self.rfile.read(length))
        type(self).requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), **request}
        )
        has_tool_result = any(m.get("role") == "tool" for m in request["messages"])
        if has_tool_result:
            chunks = [_chunk({"role": "assistant", "content": ""})]
            chunks += [_chunk({"content": piece}) for piece in ["2+2*3", " is", " 8", "."]]
            chunks.append(_chunk({}, finish="stop"))
            usage = {"prompt_tokens": 40, "completion_tokens": 4, "total_tokens": 44}
        else:
            chunks = [
                _chunk(
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_local_1",
                                "type": "function",
                                "function": {"name": "calculate", "arguments": ""},
                            }
                        ],
                    }
                ),
                _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"expression"'}}]}),
                _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ': "2+2*3"}'}}]}),
                _chunk({}, finish="tool_calls"),
            ]
            usage = {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39}
        if (request.get("stream_options") or {}).get("include_usage"):
            chunks.append(_chunk(None, usage=usage))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def local_server():
    ChatCompletionsHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ChatCompletionsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest_asyncio.fixture
async def _close_worker_connections():
    yield
    await sync_to_async(connections.close_all)()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_demo_agent_streams_from_an_openai_compatible_server(
    local_server, monkeypatch, settings, _close_worker_connections
):
    monkeypatch.setenv("OPENAI_BASE_URL", local_server)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings.FORKVIEW_MODEL = "local-model"
    agent = get_agent()
    assert isinstance(agent.model, OpenAIChatCompletionsModel)
    assert backend_label(agent) == f"local-model via {local_server}"

    events: list[dict] = []

    async def emit(message):
        events.append(message)

    outcome = await run_turn(
        session_id="compat", input="calculate 2+2*3", emit=emit, agent=agent, timeout=30
    )

    assert [m["type"] for m in events[:2]] == ["tool_call", "tool_output"]
    assert events[0]["name"] == "calculate" and events[0]["call_id"] == "call_local_1"
    assert json.loads(events[0]["arguments"]) == {"expression": "2+2*3"}
    assert events[1]["output"] == "8"  # the real tool ran on the server's call
    assert [m["text"] for m in events if m["type"] == "delta"] == ["2+2*3", " is", " 8", "."]
    assert outcome.final_output == "2+2*3 is 8."
    assert outcome.usage == {
        "requests": 2,
        "input_tokens": 70,
        "output_tokens": 13,
        "total_tokens": 83,
    }

    first, second = ChatCompletionsHandler.requests
    assert first["path"] == second["path"] == "/v1/chat/completions"
    assert first["model"] == "local-model" and first["stream"] is True
    assert first["stream_options"] == {"include_usage": True}
    assert first["auth"] == "Bearer not-needed"
    assert {t["function"]["name"] for t in first["tools"]} == {
        "calculate",
        "current_time",
        "get_weather",
        "search_sessions",
    }
    assert [m["role"] for m in second["messages"]][-2:] == ["assistant", "tool"]

    items = await DjangoSession(session_id="compat").get_items()
    assert [i.get("type") or i.get("role") for i in items] == [
        "user",
        "function_call",
        "function_call_output",
        "message",
    ]
    turn_usage = await DjangoSession(session_id="compat").get_turn_usage(1)
    assert turn_usage["total_tokens"] == 83
