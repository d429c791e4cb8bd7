"""Websocket consumers: the live chat, and live updates for a session's viewers.

The protocol is documented in ``docs/websocket-protocol.md`` and named in
:mod:`dashboard.chat.protocol`. Consumers stay thin: turns run in :mod:`dashboard.chat.turns`,
the branch guard lives in :mod:`dashboard.chat.locks`, and the few ORM calls made here are
small private ``database_sync_to_async`` methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from importlib import import_module
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote

from channels.db import aclose_old_connections, database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user, get_user_model
from django.http import HttpRequest

from conversations.models import MAIN_BRANCH
from conversations.permissions import CHAT_PERMISSIONS, VIEW_PERMISSIONS, holds_all
from conversations.session import BranchAnchor
from conversations.text import text_problem
from dashboard.agents import backend_label, get_agent
from dashboard.errors import database_unavailable

from . import protocol
from .batching import DeltaBatcher
from .context import ChatContext
from .finished import finished_turn
from .limits import max_turns_per_user, user_turn_slot
from .locks import turn_guard
from .protocol import (
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN,
    CLOSE_UNAUTHENTICATED,
    ERR_BAD_JSON,
    ERR_BAD_TEXT,
    ERR_BAD_TURN,
    ERR_DATABASE,
    ERR_EMPTY,
    ERR_FORBIDDEN,
    ERR_LISTEN_ONLY,
    ERR_LOGGED_OUT,
    ERR_NOTHING_TO_CANCEL,
    ERR_TOO_LARGE,
    ERR_TOO_MANY_TURNS,
    ERR_UNKNOWN,
    MAX_FRAME_BYTES,
    MAX_ID_CHARS,
    MAX_MESSAGE_BYTES,
    MAX_TURN,
    RETRY_HINT,
    Message,
    group_name,
)
from .turns import (
    TurnCancelled,
    TurnControl,
    TurnInput,
    TurnRefused,
    TurnTimeout,
    fork_branch,
    log_turn_failure,
    notify,
    run_turn,
    turn_anchor,
    turn_input,
)

__all__ = [
    "DEFAULT_AUTH_RECHECK_SECONDS",
    "LIVE_RETRY_SECONDS",
    "NO_CHANNEL_LAYER",
    "ChatConsumer",
    "SessionLiveConsumer",
]

logger = logging.getLogger(__name__)

#: How long a socket trusts its last authorisation check (``FORKVIEW_SOCKET_AUTH_RECHECK``).
DEFAULT_AUTH_RECHECK_SECONDS = 3.0

#: A channel-layer alias no settings define: Channels then gives a consumer no layer.
NO_CHANNEL_LAYER = "forkview.no-layer"
#: Seconds between attempts to rejoin a session's group while the channel layer is down.
LIVE_RETRY_SECONDS = 2.0

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


def _recheck_seconds() -> float:
    return float(getattr(settings, "FORKVIEW_SOCKET_AUTH_RECHECK", DEFAULT_AUTH_RECHECK_SECONDS))


class _AuthorizedConsumer(AsyncJsonWebsocketConsumer):
    """Accept only active, logged-in users holding ``permissions``; keep checking it.

    ``connect`` closes with 4401 (not logged in) / 4403 (lacking a permission) / 4400 (bad
    ids). Afterwards every incoming frame re-checks the same thing (a fresh user row, its
    permissions, and that the login session the socket was opened with still holds this user),
    trusting a passing check for ``FORKVIEW_SOCKET_AUTH_RECHECK`` seconds; a failing check sends
    an ``error`` and closes with 4401 / 4403. A refused or closed socket dispatches nothing.
    """

    permissions: ClassVar[tuple[str, ...]]
    route_prefix: ClassVar[str]
    session_id: str
    branch_id: str
    #: Set once ``connect`` accepted the user; cleared when a re-check fails.
    authorised: bool = False
    _trusted_until: float = 0.0
    _user: Any = None

    async def connect(self) -> None:
        code = await self._authorisation()
        if code is not None:
            await self._refuse(code)
            return
        self.session_id = _route_session_id(self.scope, self.route_prefix)
        query = parse_qs(self.scope.get("query_string", b"").decode("utf-8", "replace"))
        self.branch_id = (query.get("branch") or [MAIN_BRANCH])[0] or MAIN_BRANCH
        ids = (self.session_id, self.branch_id)
        # No stored id holds NUL (PostgreSQL's text cannot; the SDK never writes one).
        if not self.session_id or any(len(i) > MAX_ID_CHARS or "\x00" in i for i in ids):
            await self._refuse(CLOSE_BAD_REQUEST)
            return
        self.authorised = True
        self._trusted_until = time.monotonic() + _recheck_seconds()
        await self.connected()

    async def connected(self) -> None:
        raise NotImplementedError

    async def _refuse(self, code: int) -> None:
        # Accept first, so browsers see the close code (a refused handshake is a bare 403).
        await self.accept()
        await self.close(code=code)

    async def still_authorised(self) -> bool:
        """Re-check (at most every few seconds); on failure send ``error`` and close."""
        if not self.authorised:
            return False
        if time.monotonic() < self._trusted_until:
            return True
        code = await self._authorisation()
        if code is None:
            self._trusted_until = time.monotonic() + _recheck_seconds()
            return True
        self.authorised = False
        await self.revoked()
        with contextlib.suppress(Exception):  # the client may be gone already
            await self.send_json(
                protocol.error(ERR_LOGGED_OUT if code == CLOSE_UNAUTHENTICATED else ERR_FORBIDDEN)
            )
            await self.close(code=code)
        return False

    async def revoked(self) -> None:
        """Hook: the socket's user is no longer authorised (called before it is closed)."""

    @database_sync_to_async
    def _authorisation(self) -> int | None:
        """``None`` if the socket's user may use it now, else the close code.

        The scope's user was loaded once, at connect: read it again. When the scope carries a
        Django session (``AuthMiddlewareStack``, as ``dashboard.asgi`` mounts it), that session
        must still exist and still log this user in (Django's ``get_user``: the backend drops
        inactive users, the session hash drops sessions of a changed password); a scope
        without one (an app mounted without session auth) re-reads the user row.
        """
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return CLOSE_UNAUTHENTICATED
        session = self.scope.get("session")
        current: Any
        if session is not None:
            key = session.session_key
            if not key:
                return CLOSE_UNAUTHENTICATED
            request = HttpRequest()
            request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key=key)
            current = get_user(request)
            if not current.is_authenticated or current.pk != user.pk:
                return CLOSE_UNAUTHENTICATED
        else:
            current = get_user_model()._default_manager.filter(pk=user.pk).first()
            if current is None or not current.is_active:
                return CLOSE_UNAUTHENTICATED
        if not holds_all(current, self.permissions):
            return CLOSE_FORBIDDEN
        self._user = current
        return None

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if not await self.still_authorised():
            return  # refused or revoked: the frame is dropped, never dispatched
        await self.receive_frame(text_data)

    async def receive_frame(self, text_data: str | None) -> None:
        """An incoming frame of an authorised socket."""
        raise NotImplementedError


_Handler = Callable[["ChatConsumer", Message], Awaitable[None]]


class ChatConsumer(_AuthorizedConsumer):
    """``/ws/chat/<session_id>/?branch=<branch_id>``: continue, fork and regenerate turns."""

    permissions = CHAT_PERMISSIONS
    route_prefix = "/ws/chat/"
    # The chat only ever notifies viewers (``notify``, best effort) and listens to nothing:
    # without a layer of its own, a Redis outage cannot end its sockets.
    channel_layer_alias = NO_CHANNEL_LAYER

    async def connected(self) -> None:
        self._open = True
        self._turn: asyncio.Task[None] | None = None
        self._control: TurnControl | None = None
        # The branch as this client sees it: a turn is refused if it is renamed or deleted
        # (or the session cleared) from now on, instead of recreating it.
        self._anchor: BranchAnchor | None = await turn_anchor(
            session_id=self.session_id, branch_id=self.branch_id
        )
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

    async def revoked(self) -> None:
        # The running turn (if any) goes on and is stored once; it just stops talking here.
        self._open = False

    # ---- Incoming -----------------------------------------------------------------------------

    async def receive_frame(self, text_data: str | None) -> None:
        content = await self._decoded(text_data)
        if content is not None:
            await self.receive_json(content)

    async def _decoded(self, text_data: str | None) -> Message | None:
        """The frame as a JSON object, or ``None`` after an ``error``.

        The size is checked before decoding, so a huge frame costs no JSON parse; deep nesting
        (``RecursionError``) and numbers past Python's digit limit (``ValueError``) are bad
        JSON like any other.
        """
        if text_data is None or len(text_data) > MAX_FRAME_BYTES:
            await self._error(ERR_TOO_LARGE if text_data else ERR_BAD_JSON)
            return None
        try:
            content = json.loads(text_data)
        except (ValueError, RecursionError):
            await self._error(ERR_BAD_JSON)
            return None
        if not isinstance(content, dict):
            await self._error(ERR_BAD_JSON)
            return None
        return content

    async def receive_json(self, content: Message, **kwargs: Any) -> None:
        kind = content.get("type")
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            await self._error(ERR_UNKNOWN)
            return
        if kind == protocol.CANCEL:
            await self._on_cancel(content)
            return
        if self._turn is not None and not self._turn.done():
            await self._send(protocol.busy())
            return
        await handler(self, content)

    async def _on_user_message(self, content: Message) -> None:
        text = await self._checked_text(content)
        if text is None:
            return
        slot = await self._slot()
        if slot is not None:
            self._start(text, self.branch_id, slot)

    async def _on_fork(self, content: Message) -> None:
        """Edit-and-resubmit: branch from turn N (turns < N kept), send the new text as N."""
        text = await self._checked_text(content)
        turn = await self._checked_turn(content)
        if text is None or turn is None:
            return
        await self._fork_and_start(turn, text)

    async def _on_regenerate(self, content: Message) -> None:
        """Branch from turn N and resend that turn's user message."""
        turn = await self._checked_turn(content)
        if turn is not None:
            await self._fork_and_start(turn, None)

    async def _on_cancel(self, content: Message) -> None:
        """Stop this socket's running turn: nothing of it is stored, ``cancelled`` follows.

        Only the socket's own turn (another tab's or user's turn on the branch is theirs).
        Without one, an ``error``. Once the turn is being stored it is too late: the cancel is
        ignored and ``turn_complete`` follows as usual.
        """
        turn, control = self._turn, self._control
        if turn is None or turn.done() or control is None:
            await self._error(ERR_NOTHING_TO_CANCEL)
            return
        control.cancel()

    _handlers: ClassVar[dict[str, _Handler]] = {
        protocol.USER_MESSAGE: _on_user_message,
        protocol.FORK: _on_fork,
        protocol.REGENERATE: _on_regenerate,
        protocol.CANCEL: _on_cancel,
    }

    async def _fork_and_start(self, turn: int, text: str | None) -> None:
        """Branch from ``turn`` and run ``text`` (or the turn's own message) on the new branch.

        The user's turn slot is taken first, so a user over the cap creates no branch.
        """
        slot = await self._slot()
        if slot is None:
            return
        try:
            original = await self._branch_from(turn)
        except BaseException:
            await slot.aclose()
            raise
        if original is None:
            await slot.aclose()
            return
        self._start(text if text is not None else turn_input(original), self.branch_id, slot)

    async def _checked_text(self, content: Message) -> str | None:
        text = content.get("text")
        if not isinstance(text, str) or not text.strip():
            await self._error(ERR_EMPTY)
            return None
        problem = text_problem(text)
        if problem is not None:
            await self._error(f"{ERR_BAD_TEXT} Found {problem}.")
            return None
        if len(text.encode("utf-8")) > MAX_MESSAGE_BYTES:
            await self._error(ERR_TOO_LARGE)
            return None
        return text

    async def _checked_turn(self, content: Message) -> int | None:
        turn = content.get("turn")
        if isinstance(turn, bool) or not isinstance(turn, int) or not 1 <= turn <= MAX_TURN:
            await self._error(ERR_BAD_TURN)
            return None
        return turn

    async def _slot(self) -> contextlib.AsyncExitStack | None:
        """One of the user's concurrent-turn slots (held until the turn ends), or ``None``
        after an ``error`` when all are taken."""
        await aclose_old_connections()
        stack = contextlib.AsyncExitStack()
        acquired = await stack.enter_async_context(user_turn_slot(self._user.pk))
        if acquired:
            return stack
        await stack.aclose()
        await self._error(ERR_TOO_MANY_TURNS.format(limit=max_turns_per_user()))
        return None

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
        self._anchor = await turn_anchor(session_id=self.session_id, branch_id=new_branch)
        await self._send(message)
        await notify(self.session_id, message)
        return content

    # ---- Running a turn -------------------------------------------------------------------------

    def _start(self, input: TurnInput, branch_id: str, slot: contextlib.AsyncExitStack) -> None:
        context = ChatContext(user=self._user, session_id=self.session_id, branch_id=branch_id)
        self._control = control = TurnControl()
        task = asyncio.ensure_future(self._run(input, branch_id, slot, context, control))
        self._turn = task
        _RUNNING_TURNS.add(task)
        task.add_done_callback(_RUNNING_TURNS.discard)

    async def _run(
        self,
        input: TurnInput,
        branch_id: str,
        slot: contextlib.AsyncExitStack,
        context: ChatContext,
        control: TurnControl,
    ) -> None:
        """Run the turn under the user's slot and the branch's guard, then report it.

        Both are released before ``turn_complete`` (or ``cancelled``, or the ``error``) is
        sent: a client that sends its next message as soon as it hears the turn ended is
        never told ``busy``. ``turn_complete`` carries the stored turn rendered (``html``),
        its latency and cost (:func:`dashboard.chat.finished.finished_turn`).
        """
        await aclose_old_connections()
        emit = DeltaBatcher(self._send)
        anchor = self._anchor if self._anchor and self._anchor.branch_id == branch_id else None
        try:
            async with slot, turn_guard(self.session_id, branch_id) as acquired:
                if not acquired:
                    outcome = None
                else:
                    outcome = await run_turn(
                        session_id=self.session_id,
                        branch_id=branch_id,
                        input=input,
                        emit=emit,
                        timeout=getattr(settings, "FORKVIEW_TURN_TIMEOUT", 120),
                        context=context,
                        anchor=anchor,
                        control=control,
                    )
        except TurnCancelled:
            await emit(protocol.cancelled(self.session_id, branch_id))
        except TurnTimeout as exc:
            await emit(protocol.error(f"{exc} {RETRY_HINT}"))
        except TurnRefused as exc:
            await emit(protocol.error(str(exc)))
        except Exception as exc:
            if database_unavailable(exc):
                # Nothing was stored (a turn commits whole or not at all). The exception's
                # text may quote the turn's data: the log names only its type.
                logger.warning(
                    "Chat turn on %r / %r: the database is unavailable (%s)",
                    self.session_id,
                    branch_id,
                    type(exc).__name__,
                )
                await emit(protocol.error(ERR_DATABASE))
                return
            log_turn_failure(logger, self.session_id, branch_id, exc)
            detail = str(exc).strip()[:300] or type(exc).__name__
            await emit(
                protocol.error(f"The model failed: {type(exc).__name__}: {detail}. {RETRY_HINT}")
            )
        else:
            if outcome is None:
                await self._send(protocol.busy())
                return
            if self.branch_id == branch_id:
                self._anchor = outcome.anchor
            await emit({**outcome.message(), **await self._finished(outcome)})

    async def _finished(self, outcome: Any) -> Message:
        """The stored turn's ``html``, latency and cost (``{}`` if they cannot be read)."""
        if not self._open:
            return {}
        try:
            return await finished_turn(outcome)
        except Exception:  # the turn is stored: never turn its report into an error
            logger.warning("Could not render the finished turn", exc_info=True)
            return {}

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
    """``/ws/sessions/<session_id>/``: forwards ``turn_complete`` and ``branch_created``.

    Viewers only listen: any frame gets an ``error`` (after the authorisation re-check), and
    so does nothing else; each forwarded event re-checks the viewer too, so a viewer who lost
    the permission hears nothing more.

    The channel layer is listened to here, not by Channels' dispatch loop (which ends the
    socket on the first error of the layer): when Redis stops answering the socket stays open,
    the viewer is told ``live_status`` false, the group is joined again every
    :data:`LIVE_RETRY_SECONDS`, and ``live_status`` true says updates flow again.
    """

    permissions = VIEW_PERMISSIONS
    route_prefix = "/ws/sessions/"
    channel_layer_alias = NO_CHANNEL_LAYER  # see the class docstring

    group: str | None = None
    _channel: str | None = None
    _listener: asyncio.Task[None] | None = None

    async def connected(self) -> None:
        layer = get_channel_layer()
        live = True
        if layer is not None:
            # Joined before the handshake completes: a turn stored right after it is heard.
            self.group, self._channel = group_name(self.session_id), await layer.new_channel()
            live = await self._join(layer)
        await self.accept()
        if layer is not None:
            if not live:
                await self._say(protocol.live_status(False))
            self._listener = asyncio.ensure_future(self._listen(layer, live))

    async def _join(self, layer: Any) -> bool:
        """Join the session's group; ``False`` (logged) if the layer is unreachable."""
        assert self.group is not None and self._channel is not None
        try:
            await layer.group_add(self.group, self._channel)
        except Exception:
            logger.warning(
                "Live updates of %r paused: the channel layer is unreachable",
                self.session_id,
                exc_info=True,
            )
            return False
        return True

    async def _listen(self, layer: Any, live: bool) -> None:
        """Forward the group's events until cancelled, riding out channel-layer outages."""
        assert self._channel is not None
        while True:
            if not live:
                await asyncio.sleep(LIVE_RETRY_SECONDS)
                live = await self._join(layer)
                if live:
                    await self._say(protocol.live_status(True))
                continue
            try:
                event = await layer.receive(self._channel)
            except Exception:
                logger.warning(
                    "Live updates of %r paused: the channel layer failed",
                    self.session_id,
                    exc_info=True,
                )
                live = False
                await self._say(protocol.live_status(False))
                continue
            if event.get("type") == "session.event":
                await self.session_event(event)

    async def disconnect(self, code: int) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
        group, self.group = self.group, None
        layer = get_channel_layer()
        if group is not None and self._channel is not None and layer is not None:
            with contextlib.suppress(Exception):  # an unreachable layer forgets it anyway
                await layer.group_discard(group, self._channel)

    async def revoked(self) -> None:
        await self.disconnect(CLOSE_FORBIDDEN)  # leave the group: hear nothing more

    async def receive_frame(self, text_data: str | None) -> None:
        # Not even parsed: no frame means anything here.
        await self._say(protocol.error(ERR_LISTEN_ONLY))

    async def session_event(self, event: dict[str, Any]) -> None:
        if await self.still_authorised():
            await self._say(event["message"])

    async def _say(self, message: Message) -> None:
        with contextlib.suppress(Exception):  # the viewer may be gone already
            await self.send_json(message)
