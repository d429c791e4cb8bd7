"""Staff data editing that keeps the SDK's invariants (Django's admin, one module per subject).

Every write goes through ``conversations.services`` (the same rules the commands use, under
the session's writer lock):

- items are edited as indented JSON, validated, and their structure rows relabelled through
  ``conversations.classify``; an edit that would change the user-turn numbering is refused
  (:mod:`.messages`);
- only the last item of a branch can be deleted (``pop_item`` semantics), so turn numbers
  never get gaps; structure rows are otherwise read-only (they are derived data);
- a turn's usage is saved by ``services.turn_usage_save``: non-negative counts,
  ``total = input + output`` (:mod:`.usage`);
- branch rename / delete, session duplicate, structure rebuild and the usage health report
  are admin views and actions, each recorded in the admin log (:mod:`.sessions`,
  :mod:`.session_pages`);
- the review workflow (:mod:`.reviews`): score definitions (editable, validated, archived
  rather than deleted when in use), annotations and the audit trail (read-only), review
  statuses and API tokens through ``conversations.reviews`` (a new token shown once);
- ``branch_reservations`` has a composite primary key, which Django 5.2's admin cannot
  register: reservations are listed read-only on the session page instead.

HTML longer than one link is a template under ``templates/admin/conversations/``.
"""

from __future__ import annotations

from django.contrib import admin

from ..models import (
    AgentMessage,
    AgentSession,
    Annotation,
    ApiToken,
    AuditEntry,
    MessageStructure,
    PreferredBranch,
    ScoreDefinition,
    SessionClearGeneration,
    SessionReview,
    TurnUsage,
)
from .bookkeeping import PreferredBranchAdmin, SessionClearGenerationAdmin
from .messages import AgentMessageAdmin, MessageStructureAdmin
from .reviews import (
    AnnotationAdmin,
    ApiTokenAdmin,
    AuditEntryAdmin,
    ScoreDefinitionAdmin,
    SessionReviewAdmin,
)
from .sessions import AgentSessionAdmin, MessageInline
from .usage import TurnUsageAdmin

__all__ = [
    "AgentMessageAdmin",
    "AgentSessionAdmin",
    "AnnotationAdmin",
    "ApiTokenAdmin",
    "AuditEntryAdmin",
    "MessageInline",
    "MessageStructureAdmin",
    "PreferredBranchAdmin",
    "ScoreDefinitionAdmin",
    "SessionClearGenerationAdmin",
    "SessionReviewAdmin",
    "TurnUsageAdmin",
]

admin.site.site_header = "Forkview administration"
admin.site.site_title = "Forkview admin"

admin.site.register(AgentSession, AgentSessionAdmin)
admin.site.register(AgentMessage, AgentMessageAdmin)
admin.site.register(MessageStructure, MessageStructureAdmin)
admin.site.register(TurnUsage, TurnUsageAdmin)
admin.site.register(SessionClearGeneration, SessionClearGenerationAdmin)
admin.site.register(PreferredBranch, PreferredBranchAdmin)
admin.site.register(ScoreDefinition, ScoreDefinitionAdmin)
admin.site.register(Annotation, AnnotationAdmin)
admin.site.register(SessionReview, SessionReviewAdmin)
admin.site.register(AuditEntry, AuditEntryAdmin)
admin.site.register(ApiToken, ApiTokenAdmin)
