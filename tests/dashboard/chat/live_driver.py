"""Chat turns in a process of their own, for the cross-process live-update test.

Run as ``python -m tests.dashboard.chat.live_driver USERNAME SESSION_ID MESSAGES_JSON`` from the
repository root, with ``DATABASE_URL`` pointing at the test database and ``REDIS_URL`` at the
Redis server the test process listens on. The driver logs ``USERNAME`` in (a session cookie,
as a browser would), opens ``/ws/chat/<SESSION_ID>/`` on the real ASGI application
(``dashboard.asgi.application``) through a ``WebsocketCommunicator``, sends each client
message of ``MESSAGES_JSON`` (a JSON list) and waits for its ``turn_complete``. It prints
every ``branch_created`` and ``turn_complete`` it got as one JSON list on the last line, and
exits non-zero on an ``error``, a ``busy`` or a timeout.

``FORKVIEW_AGENT=tests.dashboard.chat.live_driver.offline_agent`` makes the chat run the offline
model without token delays (no network, no key).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any
from urllib.parse import quote

TIMEOUT = 30


def offline_agent() -> Any:
    """The chat's agent in the live-update tests: the offline model, streaming at full speed."""
    from agents import Agent

    from dashboard.demo.model import OfflineModel
    from dashboard.demo.tools import calculate

    return Agent(name="live", model=OfflineModel(token_delay=0), tools=[calculate])


async def chat(cookie: str, session_id: str, messages: list[dict[str, Any]]) -> list[Any]:
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.db import connections

    from dashboard.asgi import application
    from dashboard.chat import protocol

    headers = [
        (b"origin", b"http://localhost"),
        (b"host", b"localhost"),
        (b"cookie", cookie.encode()),
    ]
    path = f"/ws/chat/{quote(session_id, safe='')}/"
    communicator = WebsocketCommunicator(application, path, headers=headers)
    events = []
    try:
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        if not connected:
            raise RuntimeError("the chat socket was refused")
        ready = await communicator.receive_json_from(timeout=TIMEOUT)
        if ready["type"] != "ready":
            raise RuntimeError(f"expected ready, got {ready}")
        for message in messages:
            await communicator.send_json_to(message)
            while True:
                reply = await communicator.receive_json_from(timeout=TIMEOUT)
                if reply["type"] in ("branch_created", "turn_complete"):
                    # What viewers get too: without the chat's own extras (html, latency...).
                    events.append(
                        {k: v for k, v in reply.items() if k not in protocol.CHAT_TURN_EXTRAS}
                    )
                if reply["type"] == "turn_complete":
                    break
                if reply["type"] in ("error", "busy"):
                    raise RuntimeError(f"chat refused {message}: {reply}")
    finally:
        await communicator.disconnect()
        await sync_to_async(connections.close_all)()
    return events


def main() -> None:
    username, session_id, messages = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    from django.db import connections

    from tests.support.auth import cookie_header

    cookie = cookie_header(username)
    connections.close_all()
    print(json.dumps(asyncio.run(chat(cookie, session_id, messages))), flush=True)


if __name__ == "__main__":
    main()
