"""What a chat turn's tools know about who is acting: the SDK run context of a live turn.

The chat passes a :class:`ChatContext` to ``Runner.run_streamed(context=...)``; every tool that
reads Forkview data takes it from the SDK's ``RunContextWrapper`` (``wrapper.context``) and sees
only what ``user`` may view. ``None`` (a turn run outside the chat, e.g. a script) means no
acting user: such tools read nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser

__all__ = ["ChatContext"]


@dataclass(frozen=True)
class ChatContext:
    """The run context of a live chat turn."""

    user: AbstractBaseUser | AnonymousUser
    session_id: str
    branch_id: str
