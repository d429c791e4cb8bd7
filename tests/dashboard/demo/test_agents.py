"""The agent plug-in API: ``FORKVIEW_AGENT``, the model backends, the demo agent's wiring."""

from __future__ import annotations

import pytest
from agents import Agent, OpenAIChatCompletionsModel

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
    assert agents.run_config().tracing_disabled is True


def test_demo_agent_is_reexported_by_the_plug_in_api():
    from dashboard.demo.agent import demo_agent

    assert agents.demo_agent is demo_agent
