"""The OpenAI Agents SDK's session tables, as Django models.

Table names, column names, types, database defaults, indexes and unique constraints are the
ones ``AdvancedSQLiteSession`` (openai-agents 0.24) creates, so a file written by the SDK opens
here and the SDK opens files Forkview wrote. The tables themselves are created by the SDK's
own DDL in migration ``0001`` (see ``conversations/schema.py``); these classes are the ORM's
view of them.

Relations are declared ``DO_NOTHING`` on the Python side: the database carries the SDK's
``ON DELETE CASCADE`` foreign keys, and only ``DjangoSession`` deletes rows, always children
first. (Django 5.2 has no ``db_on_delete``.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Self, TypeVar

from django.conf import settings
from django.db import models
from django.db.models import Count, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce

from .fields import CurrentTimestamp, SDKJSONField
from .permissions import CUSTOM_PERMISSIONS

MAIN_BRANCH = "main"

_M = TypeVar("_M", bound=models.Model)


class AgentSessionQuerySet(models.QuerySet["AgentSession"]):
    def with_counts(self) -> AgentSessionQuerySet:
        """Annotate each session with ``message_count`` and ``branch_count``.

        Correlated subqueries, not joins: joining messages and structure rows multiplies them
        (an 800-item session is a million-row join, worse under a search's own join).
        """

        def per_session(queryset: models.QuerySet[Any], count: Count) -> Coalesce:
            rows = queryset.filter(session_id=OuterRef("pk")).order_by().values("session_id")
            return Coalesce(Subquery(rows.annotate(n=count).values("n")), 0)

        return self.annotate(
            message_count=per_session(AgentMessage.objects.all(), Count("*")),
            branch_count=per_session(
                MessageStructure.objects.all(), Count("branch_id", distinct=True)
            ),
        )


class AgentSession(models.Model):
    """One conversation (``agent_sessions``); ``session_id`` is any string."""

    session_id = models.TextField(primary_key=True)
    created_at = models.DateTimeField(null=True, blank=True, db_default=CurrentTimestamp())
    updated_at = models.DateTimeField(null=True, blank=True, db_default=CurrentTimestamp())

    objects = AgentSessionQuerySet.as_manager()

    class Meta:
        db_table = "agent_sessions"
        verbose_name = "agent session"
        ordering = ["-updated_at"]
        permissions = CUSTOM_PERMISSIONS

    def __str__(self) -> str:
        return self.session_id


class SessionScopedQuerySet(models.QuerySet[_M]):
    """Vocabulary shared by the per-session tables (chainable: each returns ``Self``)."""

    def for_session(self, session_id: str) -> Self:
        return self.filter(session_id=session_id)

    def on_branch(self, branch_id: str) -> Self:
        return self.filter(branch_id=branch_id)


class AgentMessage(models.Model):
    """One Responses-API item (``agent_messages``), shared by every branch that contains it."""

    id = models.BigAutoField(primary_key=True)
    session = models.ForeignKey(
        AgentSession,
        on_delete=models.DO_NOTHING,
        db_column="session_id",
        related_name="messages",
    )
    message_data = SDKJSONField()
    created_at = models.DateTimeField(null=True, blank=True, db_default=CurrentTimestamp())

    objects = SessionScopedQuerySet["AgentMessage"].as_manager()

    class Meta:
        db_table = "agent_messages"
        verbose_name = "agent message"
        indexes = [models.Index(fields=["session", "id"], name="idx_agent_messages_session_id")]

    def __str__(self) -> str:
        return f"message {self.pk} of {self.session_id}"


class MessageStructureQuerySet(SessionScopedQuerySet["MessageStructure"]):
    def user_turns(self) -> Self:
        """The rows that open a user turn (one per turn on a branch)."""
        return self.filter(message_type="user")

    def branch_summaries(self) -> models.QuerySet[Any, Any]:  # rows: dicts per branch
        """One row per branch: message count, user turns, first ``created_at``."""
        return (
            self.values("branch_id")
            .annotate(
                message_count=Count("id"),
                user_turns=Count("id", filter=Q(message_type="user")),
                created_at=models.Min("created_at"),
            )
            .order_by("created_at", "branch_id")
        )


class MessageStructure(models.Model):
    """Where an item sits on a branch (``message_structure``): one row per (item, branch)."""

    id = models.BigAutoField(primary_key=True)
    session = models.ForeignKey(
        AgentSession,
        on_delete=models.DO_NOTHING,
        db_column="session_id",
        related_name="structure",
    )
    message = models.ForeignKey(
        AgentMessage,
        on_delete=models.DO_NOTHING,
        db_column="message_id",
        related_name="structure",
    )
    branch_id = models.TextField(db_default=MAIN_BRANCH)
    message_type = models.TextField()
    sequence_number = models.IntegerField()
    user_turn_number = models.IntegerField(null=True, blank=True)
    branch_turn_number = models.IntegerField(null=True, blank=True)
    tool_name = models.TextField(null=True, blank=True)
    created_at = models.DateTimeField(null=True, blank=True, db_default=CurrentTimestamp())

    objects = MessageStructureQuerySet.as_manager()

    class Meta:
        db_table = "message_structure"
        verbose_name = "message structure row"
        indexes = [
            models.Index(fields=["session", "sequence_number"], name="idx_structure_session_seq"),
            models.Index(fields=["session", "branch_id"], name="idx_structure_branch"),
            models.Index(
                fields=["session", "branch_id", "user_turn_number"], name="idx_structure_turn"
            ),
            models.Index(
                fields=["session", "branch_id", "sequence_number"],
                name="idx_structure_branch_seq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.branch_id} #{self.sequence_number} ({self.message_type})"


class TurnUsageQuerySet(SessionScopedQuerySet["TurnUsage"]):
    def totals(self) -> dict[str, int | None]:
        """Sums over the selected rows, plus the number of turns they cover."""
        return self.aggregate(
            requests=Sum("requests"),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            total_tokens=Sum("total_tokens"),
            total_turns=Count("id"),
        )


class TurnUsage(models.Model):
    """Tokens for one (branch, user turn), written by ``store_run_usage`` (``turn_usage``)."""

    id = models.BigAutoField(primary_key=True)
    session = models.ForeignKey(
        AgentSession,
        on_delete=models.DO_NOTHING,
        db_column="session_id",
        related_name="usage",
    )
    branch_id = models.TextField(db_default=MAIN_BRANCH)
    user_turn_number = models.IntegerField()
    requests = models.BigIntegerField(null=True, blank=True, db_default=0)
    input_tokens = models.BigIntegerField(null=True, blank=True, db_default=0)
    output_tokens = models.BigIntegerField(null=True, blank=True, db_default=0)
    total_tokens = models.BigIntegerField(null=True, blank=True, db_default=0)
    input_tokens_details = SDKJSONField(null=True, blank=True)
    output_tokens_details = SDKJSONField(null=True, blank=True)
    created_at = models.DateTimeField(null=True, blank=True, db_default=CurrentTimestamp())

    objects = TurnUsageQuerySet.as_manager()

    class Meta:
        db_table = "turn_usage"
        verbose_name = "turn usage"
        verbose_name_plural = "turn usage"
        constraints = [
            models.UniqueConstraint(
                fields=["session", "branch_id", "user_turn_number"],
                name="turn_usage_session_branch_turn_uniq",
            )
        ]
        indexes = [
            models.Index(
                fields=["session", "branch_id", "user_turn_number"],
                name="idx_turn_usage_session_turn",
            )
        ]

    def __str__(self) -> str:
        return f"{self.session_id} / {self.branch_id} / turn {self.user_turn_number}"


class BranchReservation(models.Model):
    """Every branch id ever used in a session (``branch_reservations``); never shrinks."""

    pk = models.CompositePrimaryKey("session_id", "branch_id")
    session_id = models.TextField()
    branch_id = models.TextField()

    class Meta:
        db_table = "branch_reservations"

    def __str__(self) -> str:
        return f"{self.session_id} / {self.branch_id}"


class SessionClearGeneration(models.Model):
    """How many times a session was cleared (``session_clear_generations``).

    Session instances compare it with the value they last saw: a newer one means another
    instance cleared the history, so they fall back to ``main``. ``DjangoSession`` also locks
    this row to serialise writers of one session across processes.
    """

    session_id = models.TextField(primary_key=True)
    generation = models.IntegerField(db_default=0)

    class Meta:
        db_table = "session_clear_generations"

    def __str__(self) -> str:
        return f"{self.session_id}: {self.generation}"


class PreferredBranch(models.Model):
    """The branch a session opens on in the review pages (Forkview's own table, not the SDK's).

    Reviewers mark the path they settled on ("the good answer is on ``retry-2``"). One per
    session; a preference whose branch no longer has rows is ignored (``main`` is shown).
    """

    session_id = models.TextField(primary_key=True)
    branch_id = models.TextField()
    marked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    marked_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "forkview_preferred_branches"
        verbose_name = "preferred branch"

    def __str__(self) -> str:
        return f"{self.session_id}: {self.branch_id}"


# ---- The session list's summaries (Forkview's tables, kept by triggers: see summaries.py) ----


class SessionSummary(models.Model):
    """One session's list figures (``forkview_session_summaries``), kept by database triggers
    on the SDK's tables, so they are right whoever wrote the rows. Read-only here."""

    session_id = models.TextField(primary_key=True)
    title_message_id = models.BigIntegerField(null=True)
    title_seq = models.IntegerField(null=True)
    title_key = models.TextField()
    turn_count = models.IntegerField()
    branch_count = models.IntegerField()
    branched = models.IntegerField()  # 1 when branch_count > 1
    tools = models.TextField()  # summaries.tool_token of each tool it uses, concatenated
    total_tokens = models.BigIntegerField()
    created_at = models.DateTimeField(null=True)
    updated_at = models.DateTimeField(null=True)
    day = models.TextField()  # the UTC date of updated_at, YYYY-MM-DD ('' when none)
    # What the session's traces recorded (summaries.create_costs, migration 0011): the sum of
    # its model spans' costs in billionths of a dollar (NULL: no model call recorded), how
    # many model calls, how many of them with no price.
    cost_nanos = models.BigIntegerField(null=True)
    model_calls = models.IntegerField()
    unpriced_calls = models.IntegerField()

    class Meta:
        managed = False
        db_table = "forkview_session_summaries"

    def __str__(self) -> str:
        return self.session_id


class SessionTool(models.Model):
    """A tool a session's rows name (``forkview_session_tools``)."""

    pk = models.CompositePrimaryKey("session_id", "tool_name")
    session_id = models.TextField()
    tool_name = models.TextField()
    branched = models.IntegerField()  # the session's, copied: the filters' index
    day = models.TextField()  # the session's, copied

    class Meta:
        managed = False
        db_table = "forkview_session_tools"

    def __str__(self) -> str:
        return f"{self.session_id}: {self.tool_name}"


class ToolSessions(models.Model):
    """How many sessions name a tool (``forkview_tools``): the list's tool filter options."""

    tool_name = models.TextField(primary_key=True)
    sessions = models.IntegerField()

    class Meta:
        managed = False
        db_table = "forkview_tools"

    def __str__(self) -> str:
        return self.tool_name


class ListCount(models.Model):
    """Sessions per (tool, has branches, day of last activity) (``forkview_list_counts``);
    tool ``''`` counts every session. Any filter of the list is a sum of these."""

    pk = models.CompositePrimaryKey("tool", "branched", "day")
    tool = models.TextField()
    branched = models.IntegerField()
    day = models.TextField()
    n = models.BigIntegerField()

    class Meta:
        managed = False
        db_table = "forkview_list_counts"

    def __str__(self) -> str:
        return f"{self.tool or '*'} / {self.branched} / {self.day}: {self.n}"


# ---- The review workflow (Forkview's own tables; written by conversations/reviews.py) ----


class ScoreKind(models.TextChoices):
    BOOLEAN = "boolean", "thumbs up / down"
    NUMERIC = "numeric", "numeric range"
    CATEGORICAL = "categorical", "categories"


class ScoreDefinition(models.Model):
    """A named score reviewers give (``helpful``: thumbs; ``quality``: 1-5; ``failure``:
    categories). Staff edit them in the admin; a definition in use is archived, not deleted."""

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=ScoreKind.choices)
    min_value = models.FloatField(null=True, blank=True, help_text="Numeric scores only.")
    max_value = models.FloatField(null=True, blank=True, help_text="Numeric scores only.")
    labels = models.JSONField(
        default=list, blank=True, help_text="Categorical scores: the labels, in order."
    )
    description = models.TextField(blank=True)
    position = models.PositiveSmallIntegerField(
        default=0, help_text="Order on the score bar (keys 1-9 follow it)."
    )
    archived = models.BooleanField(default=False, help_text="Hidden from the score bar.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "forkview_score_definitions"
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class AnnotationKind(models.TextChoices):
    SCORE = "score", "score"
    COMMENT = "comment", "comment"
    TAG = "tag", "tag"


class Annotation(models.Model):
    """A reviewer's score, comment or tag on a session, a branch or one turn of a branch.

    The target: ``branch_id == ""`` is the whole session; ``turn == 0`` the whole branch;
    otherwise ``(branch_id, turn)`` is a user turn (``user_turn_number``). Annotations follow
    their target (``conversations/writes.py``: renames move them, duplicates copy them,
    deletes delete them).

    - score: ``definition``, ``value`` (boolean 1/0, the number, or a categorical label's
      index), ``label`` (the categorical label), ``body`` (an optional comment);
      one per (definition, target, author);
    - comment: ``body`` (markdown, rendered sanitised);
    - tag: ``label`` (the tag); one per (tag, target).
    """

    kind = models.CharField(max_length=8, choices=AnnotationKind.choices)
    session_id = models.TextField()
    branch_id = models.TextField(blank=True, default="")
    turn = models.PositiveIntegerField(default=0)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    definition = models.ForeignKey(
        ScoreDefinition, null=True, blank=True, on_delete=models.PROTECT, related_name="scores"
    )
    value = models.FloatField(null=True, blank=True)
    label = models.CharField(max_length=200, blank=True, default="")
    body = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "forkview_annotations"
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["session_id", "branch_id", "turn"], name="fv_annotation_target"),
            models.Index(fields=["definition", "value", "session_id"], name="fv_annotation_scores"),
            models.Index(fields=["kind", "label", "session_id"], name="fv_annotation_labels"),
            models.Index(fields=["author", "session_id"], name="fv_annotation_authors"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["definition", "session_id", "branch_id", "turn", "author"],
                condition=Q(kind="score"),
                name="fv_one_score_per_author",
            ),
            models.UniqueConstraint(
                fields=["label", "session_id", "branch_id", "turn"],
                condition=Q(kind="tag"),
                name="fv_one_tag_per_target",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} on {self.session_id}/{self.branch_id or '*'}/{self.turn or '*'}"


class ReviewStatus(models.TextChoices):
    UNREVIEWED = "unreviewed", "unreviewed"
    IN_REVIEW = "in_review", "in review"
    REVIEWED = "reviewed", "reviewed"
    NEEDS_FIX = "needs_fix", "needs fix"


class SessionReview(models.Model):
    """A session's review status and assignee; a session without a row is unreviewed."""

    session_id = models.TextField(primary_key=True)
    status = models.CharField(
        max_length=16, choices=ReviewStatus.choices, default=ReviewStatus.UNREVIEWED
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "forkview_session_reviews"
        indexes = [models.Index(fields=["status", "assignee"], name="fv_review_queue")]

    def __str__(self) -> str:
        return f"{self.session_id}: {self.status}"


class AuditEntry(models.Model):
    """One change to an annotation or a review status: who, when, before and after."""

    at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=16)  # created / updated / deleted / moved / copied
    kind = models.CharField(max_length=16)  # score / comment / tag / review
    object_id = models.BigIntegerField(null=True)
    session_id = models.TextField()
    before = models.JSONField(null=True)
    after = models.JSONField(null=True)

    class Meta:
        db_table = "forkview_audit_log"
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["session_id", "at"], name="fv_audit_session")]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.action} {self.kind} {self.session_id}"


class ApiToken(models.Model):
    """A personal API token (``Authorization: Bearer <token>``). Only its SHA-256 digest is
    stored; the token itself is shown once, when it is created. Revoked tokens stay listed."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="forkview_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The token's first characters.")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "forkview_api_tokens"
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


# ---- Traces (issue 16) ----
# Forkview's own tables, written only by conversations/tracing.py (ForkviewTracingProcessor).
# Plain text ids, no foreign keys: spans may land before their trace, several processes write,
# and a trace outlives (or predates) the session it is linked to.


class SpanKind(models.TextChoices):
    """The SDK's span types (``span_data.type``); ``task``/``turn``: the SDK's own custom spans."""

    AGENT = "agent"
    TASK = "task"
    TURN = "turn"
    RESPONSE = "response"
    GENERATION = "generation"
    FUNCTION = "function"
    HANDOFF = "handoff"
    GUARDRAIL = "guardrail"
    CUSTOM = "custom"
    MCP_TOOLS = "mcp_tools"
    TRANSCRIPTION = "transcription"
    SPEECH = "speech"
    SPEECH_GROUP = "speech_group"
    OTHER = "other"


#: The span kinds that are model calls: they carry a model, its usage and so a cost.
MODEL_SPAN_KINDS: tuple[str, ...] = (SpanKind.RESPONSE.value, SpanKind.GENERATION.value)


class AgentTrace(models.Model):
    """One SDK trace (usually one ``Runner`` run), linked to a session, branch and turn.

    ``session_id``/``branch_id``/``turn`` come from the ``forkview_*`` trace metadata that
    ``DjangoSession.run_config()`` sets; a trace without it whose ``group_id`` is a session id
    is linked to that session and to the turn its run added (resolved when the trace's end is
    written: see ``conversations/tracing.py``). Unlinked traces keep these NULL.
    """

    trace_id = models.TextField(primary_key=True)
    workflow_name = models.TextField(default="")
    group_id = models.TextField(null=True, blank=True)
    session_id = models.TextField(null=True, blank=True)
    branch_id = models.TextField(null=True, blank=True)
    turn = models.IntegerField(null=True, blank=True)
    metadata = models.JSONField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "forkview_traces"
        indexes = [
            models.Index(fields=["session_id", "branch_id", "turn"], name="fv_trace_turn"),
            models.Index(fields=["started_at"], name="fv_trace_started"),
        ]

    def __str__(self) -> str:
        return f"{self.trace_id} ({self.workflow_name})"


#: A span's fields as Forkview shows and exports them (the JSON tree export's span keys, the
#: API's span objects): one list for every reader.
SPAN_FIELDS = (
    "span_id",
    "parent_id",
    "kind",
    "name",
    "started_at",
    "ended_at",
    "duration_ms",
    "error",
    "model",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "data",
)


class AgentSpanQuerySet(models.QuerySet["AgentSpan"]):
    """Every span written through the ORM is priced first (one rule, one place)."""

    def bulk_create(self, objs: Iterable[AgentSpan], *args: Any, **kwargs: Any) -> list[AgentSpan]:
        from conversations.costs import price_spans

        objs = list(objs)
        price_spans(objs, again=False)
        return super().bulk_create(objs, *args, **kwargs)


class AgentSpan(models.Model):
    """One finished SDK span: its place in the tree, timings, error, and (for model calls)
    the model and token usage. ``data`` is the span's ``export()`` minus what the data policy
    withholds (see ``conversations/tracing.py``)."""

    span_id = models.TextField(primary_key=True)
    trace_id = models.TextField()
    parent_id = models.TextField(null=True, blank=True)
    kind = models.CharField(max_length=32, choices=SpanKind.choices)
    name = models.TextField(default="")
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)  # {"message": ..., "data": ...}
    model = models.TextField(null=True, blank=True)
    input_tokens = models.BigIntegerField(null=True, blank=True)
    output_tokens = models.BigIntegerField(null=True, blank=True)
    cached_input_tokens = models.BigIntegerField(null=True, blank=True)
    reasoning_tokens = models.BigIntegerField(null=True, blank=True)
    #: A model call's cost in billionths of a US dollar, priced when the span is written
    #: (``conversations.costs.span_cost_nanos``, applied by every ``bulk_create``/``save``;
    #: ``manage.py reprice_spans`` applies changed prices). NULL: not a model call, or no price.
    cost_nanos = models.BigIntegerField(null=True, blank=True)
    data = models.JSONField(default=dict)

    objects = AgentSpanQuerySet.as_manager()

    class Meta:
        db_table = "forkview_spans"
        indexes = [
            models.Index(fields=["trace_id", "started_at"], name="fv_span_trace"),
            models.Index(fields=["kind", "model", "started_at"], name="fv_span_kind_model"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.name or self.span_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        from conversations.costs import price_spans

        price_spans([self])
        super().save(*args, **kwargs)
