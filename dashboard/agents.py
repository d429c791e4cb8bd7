"""Which agent the live chat runs, and on which model backend.

The agent is a dotted path in ``settings.FORKVIEW_AGENT`` (env ``FORKVIEW_AGENT``): either an
``agents.Agent`` instance or a zero-argument factory returning one. Teams plug in their own
agent, with their own tools, without touching Forkview::

    # myteam/forkview_agent.py
    from agents import Agent
    from dashboard.agents import default_model

    def support_agent() -> Agent:
        return Agent(name="support", instructions="...", tools=[...], model=default_model())

    # environment
    FORKVIEW_AGENT=myteam.forkview_agent.support_agent

The model backend follows the environment (``default_model``):

- ``OPENAI_BASE_URL`` set: any OpenAI-compatible Chat Completions server (Ollama, vLLM,
  LM Studio, ...) through the SDK's ``OpenAIChatCompletionsModel``; ``FORKVIEW_MODEL`` names
  the model, ``OPENAI_API_KEY`` is sent if set (most local servers ignore it).
- ``OPENAI_API_KEY`` set: OpenAI's Responses API, model ``FORKVIEW_MODEL``.
- neither: the built-in offline demo model (``dashboard.demo.model.OfflineModel``).

``backend_label()`` names the active backend for the chat page. The demo agent itself (the
``FORKVIEW_AGENT`` default, ``dashboard.agents.demo_agent``) lives in :mod:`dashboard.demo.agent`.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from agents import (
    Agent,
    ModelSettings,
    RunConfig,
    TracingProcessor,
    add_trace_processor,
    set_trace_processors,
)
from agents.models.interface import Model
from agents.tracing import get_trace_provider
from django.conf import settings
from django.utils.module_loading import import_string

from conversations.tracing import ForkviewTracingProcessor
from dashboard.demo.agent import demo_agent
from dashboard.demo.model import OFFLINE_LABEL, OfflineModel

__all__ = [
    "backend_label",
    "default_model",
    "default_model_settings",
    "demo_agent",
    "get_agent",
    "model_label",
    "run_config",
    "stop_tracing",
    "tracing_enabled",
    "tracing_processor",
    "uses_openai",
]


# ---- Backends ------------------------------------------------------------------------------


def _env(name: str) -> str:
    """A setting, else the environment variable of the same name, else ``""``."""
    return str(getattr(settings, name, "") or os.environ.get(name, "") or "")


def default_model() -> Model | str:
    """The model the environment selects (see the module docstring)."""
    base_url = _env("OPENAI_BASE_URL")
    model_name = _env("FORKVIEW_MODEL") or "gpt-4.1-mini"
    if base_url:
        from agents import OpenAIChatCompletionsModel
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=base_url, api_key=_env("OPENAI_API_KEY") or "not-needed")
        return OpenAIChatCompletionsModel(model=model_name, openai_client=client)
    if _env("OPENAI_API_KEY"):
        return model_name
    delay_ms = float(getattr(settings, "FORKVIEW_OFFLINE_TOKEN_DELAY_MS", 12))
    return OfflineModel(token_delay=delay_ms / 1000)


def default_model_settings() -> ModelSettings:
    """Settings for ``default_model()``: ask OpenAI-compatible servers for token usage.

    The SDK requests ``stream_options.include_usage`` only from api.openai.com; Ollama, vLLM
    and LM Studio support it too, and without it a streamed turn reports 0 tokens.
    """
    return ModelSettings(include_usage=True) if _env("OPENAI_BASE_URL") else ModelSettings()


def model_label(model: Model | str | None) -> str:
    """A human label for a model object or name."""
    if isinstance(model, OfflineModel):
        return OFFLINE_LABEL
    if model is None:
        return "OpenAI (SDK default model)"
    if isinstance(model, str):
        return f"OpenAI {model}"
    name = getattr(model, "model", None) or type(model).__name__
    client = getattr(model, "_client", None)
    base_url = str(getattr(client, "base_url", "") or "")
    if base_url:
        return f"{name} via {base_url.rstrip('/')}"
    return str(name)


def backend_label(agent: Agent[Any] | None = None) -> str:
    """The label of the backend the chat runs on (of ``agent``, else of the configured one)."""
    agent = agent if agent is not None else get_agent()
    return model_label(agent.model)


def uses_openai() -> bool:
    """Whether the chat talks to OpenAI itself (a key, and no other server's base URL)."""
    return bool(_env("OPENAI_API_KEY")) and not _env("OPENAI_BASE_URL")


def tracing_enabled() -> bool:
    """``settings.FORKVIEW_TRACING`` (default on): chat turns are traced into Forkview."""
    return bool(getattr(settings, "FORKVIEW_TRACING", True))


_tracing_lock = threading.Lock()
_tracing_processor: ForkviewTracingProcessor | None = None
_replaced: list[TracingProcessor] | None = None


def _sdk_processors() -> list[TracingProcessor]:
    # The SDK has no getter for its processors (its own tests read this attribute too).
    multi = getattr(get_trace_provider(), "_multi_processor", None)
    return list(getattr(multi, "_processors", ()))


def tracing_processor() -> ForkviewTracingProcessor | None:
    """The chat's ``ForkviewTracingProcessor``, registered with the SDK on the first call.

    Once per process (thread-safe; the live chat calls this before each turn). Talking to
    OpenAI (:func:`uses_openai`) it is *added* (``add_trace_processor``: the SDK's exporter to
    the OpenAI dashboard stays); otherwise it *replaces* the SDK's processors
    (``set_trace_processors``), so nothing tries OpenAI's endpoint without a key. ``None``
    (nothing registered) when ``FORKVIEW_TRACING`` is off.
    """
    global _tracing_processor, _replaced
    if not tracing_enabled():
        return None
    with _tracing_lock:
        if _tracing_processor is None:
            processor = ForkviewTracingProcessor()
            _replaced = _sdk_processors()
            if uses_openai():
                add_trace_processor(processor)
            else:
                set_trace_processors([processor])
            _tracing_processor = processor
        return _tracing_processor


def stop_tracing() -> None:
    """Flush and stop the chat's processor and give the SDK back its previous processors.

    For tests (the processor's worker holds a database connection) and orderly shutdowns;
    the next chat turn registers a fresh processor.
    """
    global _tracing_processor, _replaced
    with _tracing_lock:
        processor, _tracing_processor = _tracing_processor, None
        previous, _replaced = _replaced, None
        if processor is None:
            return
        set_trace_processors(previous or [])
    processor.shutdown()


def run_config(agent: Agent[Any] | None = None) -> RunConfig:
    """The plug-in's ``RunConfig`` for chat turns (its workflow name, whether to trace).

    Traced when the traces have somewhere to go: the chat's processor is registered
    (:func:`tracing_processor`, ``FORKVIEW_TRACING`` on) or the chat talks to OpenAI (the
    SDK's own exporter); otherwise not, so the SDK never tries OpenAI's endpoint without a
    key. The chat merges this with ``DjangoSession.run_config()`` (the links to the session,
    branch and turn): see ``dashboard.chat.turns.turn_run_config``.
    """
    traced = uses_openai() or (tracing_enabled() and _tracing_processor is not None)
    return RunConfig(tracing_disabled=not traced, workflow_name="Forkview chat")


def get_agent() -> Agent[Any]:
    """The agent named by ``settings.FORKVIEW_AGENT`` (an ``Agent`` or a factory of one).

    Raises:
        ImportError: The dotted path does not import.
        TypeError: It names neither an ``Agent`` nor a callable returning one.
    """
    target = import_string(settings.FORKVIEW_AGENT)
    agent = target if isinstance(target, Agent) else target() if callable(target) else None
    if not isinstance(agent, Agent):
        raise TypeError(f"FORKVIEW_AGENT={settings.FORKVIEW_AGENT!r} is not an Agent or factory")
    return agent
