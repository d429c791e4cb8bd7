"""The per-user cap on concurrent chat turns (``FORKVIEW_MAX_TURNS_PER_USER``; issue 12, hole 7).

Through the real ASGI stack and the real Runner (the offline model, slowed down so a turn is
still streaming while the next socket sends): a user at the cap gets the documented ``error``
and nothing is stored for the refused turn; a slot frees when a turn ends; other users have
slots of their own; a cap of 0 means no cap. The slots are the chat's cross-process guard
(``dashboard.chat.limits``), so this holds across server processes as the branch guard does.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async

from conversations.models import MessageStructure
from conversations.permissions import CHAT, VIEW
from dashboard.chat import protocol
from tests.security.test_frames import TIMEOUT, _chat, _drained, _user  # noqa: F401
from tests.support.auth import cookie_header

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _slow_turns(settings: Any) -> None:
    settings.FORKVIEW_OFFLINE_TOKEN_DELAY_MS = 30  # a turn streams for a second or two
    settings.FORKVIEW_MAX_TURNS_PER_USER = 1


@pytest_asyncio.fixture
async def cookies(django_user_model: Any) -> tuple[str, str]:
    users = [await sync_to_async(_user)(django_user_model, name, VIEW, CHAT) for name in ("a", "b")]
    return tuple([await sync_to_async(cookie_header)(user) for user in users])  # type: ignore[return-value]


async def _send(socket: Any, text: str) -> None:
    await socket.send_to(text_data=json.dumps({"type": protocol.USER_MESSAGE, "text": text}))


async def _until_end(socket: Any) -> dict[str, Any]:
    while True:
        message = await socket.receive_json_from(timeout=TIMEOUT)
        if message["type"] in (protocol.TURN_COMPLETE, protocol.ERROR):
            return message


@sync_to_async
def _user_turns(session_id: str) -> int:
    return MessageStructure.objects.filter(session_id=session_id, message_type="user").count()


async def test_a_user_at_the_cap_is_refused_and_nothing_is_stored(cookies):
    first, second = await _chat(cookies[0], "cap/1"), await _chat(cookies[0], "cap/2")
    await _send(first, "hello one")
    assert (await first.receive_json_from(timeout=TIMEOUT))["type"] == protocol.DELTA
    await _send(second, "hello two")  # the first turn still streams
    refused = await second.receive_json_from(timeout=TIMEOUT)
    assert refused == protocol.error(protocol.ERR_TOO_MANY_TURNS.format(limit=1))
    assert (await _until_end(first))["type"] == protocol.TURN_COMPLETE
    assert await _user_turns("cap/2") == 0
    # The slot is free again once the turn ended.
    await _send(second, "hello two")
    done = await _until_end(second)
    assert done["type"] == protocol.TURN_COMPLETE and done["turn"] == 1
    assert (await _user_turns("cap/1"), await _user_turns("cap/2")) == (1, 1)
    await first.disconnect()
    await second.disconnect()


async def test_other_users_have_slots_of_their_own(cookies):
    mine, theirs = await _chat(cookies[0], "cap/mine"), await _chat(cookies[1], "cap/theirs")
    await _send(mine, "hello")
    assert (await mine.receive_json_from(timeout=TIMEOUT))["type"] == protocol.DELTA
    await _send(theirs, "hello")
    assert (await _until_end(theirs))["type"] == protocol.TURN_COMPLETE
    assert (await _until_end(mine))["type"] == protocol.TURN_COMPLETE
    await mine.disconnect()
    await theirs.disconnect()


async def test_zero_means_no_cap(cookies, settings):
    settings.FORKVIEW_MAX_TURNS_PER_USER = 0
    sockets = [await _chat(cookies[0], f"cap/free-{i}") for i in range(3)]
    for socket in sockets:
        await _send(socket, "hello")
    for socket in sockets:
        assert (await _until_end(socket))["type"] == protocol.TURN_COMPLETE
        await socket.disconnect()
