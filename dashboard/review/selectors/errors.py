"""What the review selectors raise when a page asks for something that is not there.

The read layer knows nothing of HTTP: views (and the chat page, and agent tools) decide what
an unknown session or branch means for them; the review views answer 404.
"""

from __future__ import annotations

__all__ = ["BranchNotFound", "ReviewError", "SessionNotFound"]


class ReviewError(LookupError):
    """Base of the review selectors' lookup failures."""


class SessionNotFound(ReviewError):
    """The session has no rows (no ``agent_sessions`` row, or no messages on any branch)."""

    def __init__(self, session_id: str) -> None:
        super().__init__("No such session")
        self.session_id = session_id


class BranchNotFound(ReviewError):
    """The session exists but has no rows on this branch."""

    def __init__(self, session_id: str, branch_id: str) -> None:
        super().__init__("No such branch")
        self.session_id = session_id
        self.branch_id = branch_id
