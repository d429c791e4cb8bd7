"""Sessions for the admin, services and import/export tests, written by ``DjangoSession``."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync

from conversations.session import DjangoSession
from tests.support.sdk_harness import (
    assistant,
    function_call,
    function_output,
    reasoning,
    usage,
    user,
)


def call(session: DjangoSession, method: str, *args: Any, **kwargs: Any) -> Any:
    """Run one ``DjangoSession`` coroutine from sync test code."""
    return async_to_sync(getattr(session, method))(*args, **kwargs)


def tree_session(session_id: str = "s1") -> DjangoSession:
    """main: 3 turns (tools in turn 1, usage on 1-3); "alt": turn 1 copied + its own turn 2."""
    session = DjangoSession(session_id=session_id)
    call(session, "add_items", [{"role": "system", "content": "be brief"}])
    call(
        session,
        "add_items",
        [
            user("What's the weather in Paris?"),
            reasoning(),
            function_call("get_weather", "c1", '{"city": "Paris"}'),
            function_output("c1", "sunny"),
            assistant("Sunny in Paris."),
        ],
    )
    call(session, "store_usage", usage(2, 100, 20))
    call(session, "add_items", [user("And tomorrow?"), assistant("Rain.", "msg_2")])
    call(session, "store_usage", usage(1, 150, 10))
    call(session, "add_items", [user("Thanks"), assistant("You're welcome.", "msg_3")])
    call(session, "store_usage", usage(1, 170, 5))
    call(session, "create_branch_from_turn", 2, "alt")
    call(session, "add_items", [user("What about Lyon?"), assistant("Cloudy.", "msg_4")])
    call(session, "store_usage", usage(1, 140, 8))
    return DjangoSession(session_id=session_id)
