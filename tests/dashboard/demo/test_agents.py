"""The agent plug-in API: ``FORKVIEW_AGENT``, the model backends, the demo agent's wiring."""

from __future__ import annotations

import pytest
from agents import Agent, OpenAIChatCompletionsModel

from conversations.tracing import ForkviewTracingProcessor
from dashboard import agents
from dashboard.agents import backend_label, get_agent
from dashboard.demo.model import OFFLINE_LABEL, OfflineModel

BACKEND_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL")
MODULE_AGENT = Agent(name="module-level agent", model=OfflineModel())


@pytest.fixture
def offline_env(monkeypatch):
    for name in BACKEND_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# ---- Choosing the agent and the backend ------------------------------------------------------


def test_default_agent_is_the_demo_assistant_on_the_offline_model(offline_env):
    agent = get_agent()
    assert agent.name == "Forkview assistant"
    assert sorted(tool.name for tool in agent.tools) == [
        "calculate",
        "current_time",
        "get_weather",
        "search_sessions",
    ]
    assert isinstance(agent.model, OfflineModel)
    assert backend_label(agent) == OFFLINE_LABEL == "offline demo model"


def test_forkview_agent_may_name_an_agent_instance_or_a_factory(settings):
    settings.FORKVIEW_AGENT = f"{__name__}.MODULE_AGENT"
    assert get_agent() is MODULE_AGENT
    settings.FORKVIEW_AGENT = "dashboard.agents.demo_agent"
    assert get_agent() is not get_agent()  # a factory: a fresh agent per turn
    settings.FORKVIEW_AGENT = "dashboard.demo.agent.INSTRUCTIONS"
    with pytest.raises(TypeError, match="not an Agent"):
        get_agent()
    settings.FORKVIEW_AGENT = "dashboard.nope.agent"
    with pytest.raises(ImportError):
        get_agent()


def test_openai_key_selects_openai_with_forkview_model(offline_env, settings):
    offline_env.setenv("OPENAI_API_KEY", "sk-test")
    settings.FORKVIEW_MODEL = "gpt-4.1-nano"
    agent = get_agent()
    assert agent.model == "gpt-4.1-nano"
    assert backend_label(agent) == "OpenAI gpt-4.1-nano"
    assert agents.run_config().tracing_disabled is False


def test_base_url_selects_an_openai_compatible_server(offline_env, settings):
    offline_env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")
    settings.FORKVIEW_MODEL = "llama3.2"
    agent = get_agent()
    assert isinstance(agent.model, OpenAIChatCompletionsModel)
    assert agent.model_settings.include_usage is True
    assert backend_label(agent) == "llama3.2 via http://127.0.0.1:11434/v1"


# ---- Tracing: the chat's processor (issue 16) ------------------------------------------------


@pytest.fixture
def chat_tracing():
    """Stop the chat's processor afterwards (its worker would keep a database connection)."""
    agents.stop_tracing()
    before = agents._sdk_processors()
    yield
    agents.stop_tracing()
    assert agents._sdk_processors() == before  # the SDK's own processors are back


@pytest.mark.parametrize("base_url", ["", "http://127.0.0.1:11434/v1"])
def test_not_talking_to_openai_forkview_is_the_only_trace_processor(
    offline_env, chat_tracing, base_url
):
    if base_url:  # a local server, even with a key, never gets traces sent to OpenAI
        offline_env.setenv("OPENAI_API_KEY", "sk-local")
        offline_env.setenv("OPENAI_BASE_URL", base_url)
    assert agents.run_config().tracing_disabled is True  # nowhere to go yet
    processor = agents.tracing_processor()
    assert isinstance(processor, ForkviewTracingProcessor)
    assert agents.tracing_processor() is processor  # once per process
    assert agents._sdk_processors() == [processor]
    config = agents.run_config()
    assert config.tracing_disabled is False and config.workflow_name == "Forkview chat"


def test_talking_to_openai_keeps_the_sdk_exporter(offline_env, chat_tracing):
    offline_env.setenv("OPENAI_API_KEY", "sk-test")
    exporters = agents._sdk_processors()
    processor = agents.tracing_processor()
    assert agents._sdk_processors() == [*exporters, processor]
    assert agents.run_config().tracing_disabled is False


def test_forkview_tracing_off_registers_nothing(offline_env, chat_tracing, settings):
    settings.FORKVIEW_TRACING = False
    before = agents._sdk_processors()
    assert agents.tracing_processor() is None
    assert agents._sdk_processors() == before
    assert agents.run_config().tracing_disabled is True  # offline: traces have nowhere to go
    offline_env.setenv("OPENAI_API_KEY", "sk-test")
    assert agents.run_config().tracing_disabled is False  # the SDK's exporter takes them


def test_demo_agent_is_reexported_by_the_plug_in_api():
    from dashboard.demo.agent import demo_agent

    assert agents.demo_agent is demo_agent
