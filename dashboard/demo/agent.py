"""The demo agent: Forkview's assistant with the four demo tools, on the environment's model.

``dashboard.agents.demo_agent`` (the ``FORKVIEW_AGENT`` default) is this function.
"""

from __future__ import annotations

from typing import Any

from agents import Agent

from .tools import DEMO_TOOLS

__all__ = ["INSTRUCTIONS", "demo_agent"]

INSTRUCTIONS = (
    "You are Forkview's demo assistant. Be brief. Use current_time for the date or time, "
    "calculate for arithmetic (never do it in your head), get_weather for the weather in a "
    "city, and search_sessions to find past conversations stored in Forkview."
)


def demo_agent() -> Agent[Any]:
    """Forkview's demo assistant: four real tools on the environment's model."""
    # The plug-in API re-exports this function: import it here, not at module level.
    from dashboard.agents import default_model, default_model_settings

    return Agent(
        name="Forkview assistant",
        instructions=INSTRUCTIONS,
        tools=list(DEMO_TOOLS),
        model=default_model(),
        model_settings=default_model_settings(),
    )
