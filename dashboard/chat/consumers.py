"""Websocket consumers: the live chat, and live updates for a session's viewers.

The protocol is documented in ``docs/websocket-protocol.md`` and named in
:mod:`dashboard.chat.protocol`. Consumers stay thin: turns run in :mod:`dashboard.chat.turns`,
the branch guard lives in :mod:`dashboard.chat.locks`, and the few ORM calls made here are
small private ``database_sync_to_async`` methods.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote

from channels.db import aclose_old_connections, database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser, PermissionsMixin

from conversations.models import MAIN_BRANCH
from conversations.permissions import CHAT, VIEW
from dashboard.agents import backend_label, get_agent

from . import protocol
from .batching import DeltaBatcher
from .locks import turn_guard
from .protocol import (
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN,
    CLOSE_UNAUTHENTICATED,
    ERR_BAD_JSON,
    ERR_BAD_TURN,
    ERR_EMPTY,
    ERR_TOO_LARGE,
    ERR_UNKNOWN,
    MAX_FRAME_BYTES,
    MAX_ID_CHARS,
    MAX_MESSAGE_BYTES,
    RETRY_HINT,
    Message,
    group_name,
)
from .turns import TurnInput, TurnTimeout, fork_branch, notify, run_turn, turn_input

__all__ = ["ChatConsumer", "SessionLiveConsumer"]

logger = logging.getLogger(__name__)

# Turns outlive a dropped socket (they finish and are stored): keep their tasks referenced.
_RUNNING_TURNS: set[asyncio.Task[None]] = set()


def _route_session_id(scope: Mapping[str, Any], prefix: str) -> str:
    """The session id from the URL, percent-decoded exactly once.

    Servers hand consumers an already-decoded ``path``; when the raw path is there we decode
    its segment ourselves (``urllib.parse.unquote``) so an id containing ``%`` or ``/`` round
    trips exactly. Without ``raw_path`` (the test communicator) the route kwarg is used.
    """
    raw = scope.get("raw_path")
    if raw:
        text = raw.decode("ascii", "replace").split("?", 1)[0]
        if text.startswith(prefix) and text.endswith("/"):
            return unquote(text[len(prefix) : -1])
    session_id: str = scope["url_route"]["kwargs"]["session_id"]
    return session_id


class _AuthorizedConsumer(AsyncJsonWebsocketConsumer):
    """Accept only logged-in users with ``permission``; close with 4401/4403 otherwise."""

    permission: ClassVar[str]
    route_prefix: ClassVar[str]
    session_id: str
    branch_id: str

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._refuse(CLOSE_UNAUTHENTICATED)
            return
        if not await self._has_perm(user, self.permission):
            await self._refuse(CLOSE_FORBIDDEN)
            return
        self.session_id = _route_session_id(self.scope, self.route_prefix)
        query = parse_qs(self.scope.get("query_string", b"").decode("utf-8", "replace"))
        self.branch_id = (query.get("branch") or [MAIN_BRANCH])[0] or MAIN_BRANCH
        if not self.session_id or len(self.session_id) > MAX_ID_CHARS:
            await self._refuse(CLOSE_BAD_REQUEST)
            return
        await self.connected()

    async def connected(self) -> None:
        raise NotImplementedError

    async def _refuse(self, code: int) -> None:
        # Accept first, so browsers see the close code (a refused handshake is a bare 403).
        await self.accept()
        await self.close(code=code)

    @database_sync_to_async
    def _has_perm(self, user: AbstractBaseUser | AnonymousUser, permission: str) -> bool:
        # The scope's user is a lazy proxy: isinstance sees (and loads) the real user. A user
        # model without Django's PermissionsMixin has no permissions to check.
        return isinstance(user, PermissionsMixin | AnonymousUser) and user.has_perm(permission)


_Handler = Callable[["ChatConsumer", Message], Awaitable[None]]


class ChatConsumer(_AuthorizedConsumer):
    """``/ws/chat/<session_id>/?branch=<branch_id>``: continue, fork and regenerate turns."""

    permission = CHAT
    route_prefix = "/ws/chat/"

    async def connected(self) -> None:
        self._open = True
        self._turn: asyncio.Task[None] | None = None
        await self.accept()
        label = await self._backend_label()
        await self.send_json(
            {
                "type": protocol.READY,
                "session_id": self.session_id,
                "branch_id": self.branch_id,
                "backend": label,
                "max_bytes": MAX_MESSAGE_BYTES,
            }
        )

    async def disconnect(self, code: int) -> None:
        # A running turn is not cancelled: it finishes, is stored once and notified.
        self._open = False

    # ---- Incoming -----------------------------------------------------------------------------

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        # Check the size before decoding, so a huge frame costs no JSON parse.
        if text_data is None or len(text_data) > MAX_FRAME_BYTES:
            await self._error(ERR_TOO_LARGE if text_data else ERR_BAD_JSON)
            return
        try:
            content = json.loads(text_data)
        except json.JSONDecodeError:
            await self._error(ERR_BAD_JSON)
            return
        if not isinstance(content, dict):
            await self._error(ERR_BAD_JSON)
            return
        await self.receive_json(content)

    async def receive_json(self, content: Message, **kwargs: Any) -> None:
        kind = content.get("type")
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            await self._error(ERR_UNKNOWN)
            return
        if self._turn is not None and not self._turn.done():
            await self.send_json(protocol.busy())
            return
        await handler(self, content)

    async def _on_user_message(self, content: Message) -> None:
        text = await self._checked_text(content)
        if text is not None:
            self._start(text, self.branch_id)

    async def _on_fork(self, content: Message) -> None:
        """Edit-and-resubmit: branch from turn N (turns < N kept), send the new text as N."""
        text = await self._checked_text(content)
        turn = await self._checked_turn(content)
        if text is None or turn is None:
            return
        if await self._branch_from(turn) is not None:
            self._start(text, self.branch_id)

    async def _on_regenerate(self, content: Message) -> None:
        """Branch from turn N and resend that turn's user message."""
        turn = await self._checked_turn(content)
        if turn is None:
            return
        original = await self._branch_from(turn)
        if original is not None:
            self._start(turn_input(original), self.branch_id)

    _handlers: ClassVar[dict[str, _Handler]] = {
        protocol.USER_MESSAGE: _on_user_message,
        protocol.FORK: _on_fork,
        protocol.REGENERATE: _on_regenerate,
    }

    async def _checked_text(self, content: Message) -> str | None:
        text = content.get("text")
        if not isinstance(text, str) or not text.strip():
            await self._error(ERR_EMPTY)
            return None
        if len(text.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
            await self._error(ERR_TOO_LARGE)
            return None
        return text

    async def _checked_turn(self, content: Message) -> int | None:
        turn = content.get("turn")
        if isinstance(turn, bool) or not isinstance(turn, int) or turn < 1:
            await self._error(ERR_BAD_TURN)
            return None
        return turn

    async def _branch_from(self, turn: int) -> Any:
        """Create a branch from ``turn``; switch the socket to it; return the turn's content.

        ``None`` (after an ``error`` message) when the branch has no such turn.
        """
        await aclose_old_connections()
        try:
            new_branch, content = await fork_branch(
                session_id=self.session_id, branch_id=self.branch_id, turn=turn
            )
        except ValueError as exc:
            await self._error(str(exc))
            return None
        message = {
            "type": protocol.BRANCH_CREATED,
            "session_id": self.session_id,
            "branch_id": new_branch,
            "from_branch": self.branch_id,
            "turn": turn,
        }
        self.branch_id = new_branch
        await self._send(message)
        await notify(self.session_id, message)
        return content

    # ---- Running a turn -------------------------------------------------------------------------

    def _start(self, input: TurnInput, branch_id: str) -> None:
        task = asyncio.ensure_future(self._run(input, branch_id))
        self._turn = task
        _RUNNING_TURNS.add(task)
        task.add_done_callback(_RUNNING_TURNS.discard)

    async def _run(self, input: TurnInput, branch_id: str) -> None:
        await aclose_old_connections()
        emit = DeltaBatcher(self._send)
        try:
            async with turn_guard(self.session_id, branch_id) as acquired:
                if not acquired:
                    await self._send(protocol.busy())
                    return
                outcome = await run_turn(
                    session_id=self.session_id,
                    branch_id=branch_id,
                    input=input,
                    emit=emit,
                    timeout=getattr(settings, "FORKVIEW_TURN_TIMEOUT", 120),
                )
        except TurnTimeout as exc:
            await emit(protocol.error(f"{exc} {RETRY_HINT}"))
        except Exception as exc:
            logger.exception("Chat turn failed on %r / %r", self.session_id, branch_id)
            detail = str(exc).strip()[:300] or type(exc).__name__
            await emit(
                protocol.error(f"The model failed: {type(exc).__name__}: {detail}. {RETRY_HINT}")
            )
        else:
            await emit(outcome.message())

    # ---- Outgoing -------------------------------------------------------------------------------

    async def _send(self, message: Message) -> None:
        """Send if the socket is still open (a turn may outlive it)."""
        if not self._open:
            return
        try:
            await self.send_json(message)
        except Exception:  # the client went away between the check and the send
            self._open = False

    async def _error(self, text: str) -> None:
        await self._send(protocol.error(text))

    @database_sync_to_async
    def _backend_label(self) -> str:
        # Building the agent may import team code that touches the ORM: keep it off the loop.
        return backend_label(get_agent())


class SessionLiveConsumer(_AuthorizedConsumer):
    """``/ws/sessions/<session_id>/``: forwards ``turn_complete`` and ``branch_created``."""

    permission = VIEW
    route_prefix = "/ws/sessions/"

    async def connected(self) -> None:
        self.group = group_name(self.session_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        group = getattr(self, "group", None)
        if group is not None:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Viewers only listen."""

    async def session_event(self, event: dict[str, Any]) -> None:
        await self.send_json(event["message"])
