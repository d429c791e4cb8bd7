"""The live chat: pages, websocket consumers, the turn runner, the protocol and the turn guard.

``views`` renders the chat page; ``consumers`` speak the websocket protocol (``protocol``,
documented in ``docs/websocket-protocol.md``) over ``routing``; ``turns`` runs and stores one
turn; ``locks`` keeps one turn per branch across processes; ``batching`` coalesces deltas.
"""

from __future__ import annotations
