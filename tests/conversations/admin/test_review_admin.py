"""The review workflow's admin (conversations/admin/reviews.py): score definitions (validated,
archived rather than deleted when in use), annotations and the audit trail (read-only),
review statuses and API tokens (through conversations.reviews; a new token shown once)."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations import reviews
from conversations.models import (
    Annotation,
    ApiToken,
    AuditEntry,
    ScoreDefinition,
    SessionReview,
)
from conversations.reviews import Target
from tests.conversations.admin.pages import change_url, staff_with
from tests.support.trees import tree_session

pytestmark = pytest.mark.django_db

MODELS = ("scoredefinition", "annotation", "sessionreview", "auditentry", "apitoken")


def list_url(model: str) -> str:
    return reverse(f"admin:conversations_{model}_changelist")


def add_url(model: str) -> str:
    return reverse(f"admin:conversations_{model}_add")


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="pw-alice-1")


@pytest.fixture
def scored(alice):
    """s1 with one of each annotation kind, a review status, an audit trail and a token."""
    tree_session("s1")
    helpful = ScoreDefinition.objects.create(name="helpful", kind="boolean")
    ScoreDefinition.objects.create(name="quality", kind="numeric", min_value=1, max_value=5)
    ScoreDefinition.objects.create(name="failure", kind="categorical", labels=["a", "b", "c"])
    reviews.score_set(user=alice, target=Target("s1", "main", 1), definition=helpful, value=1)
    reviews.score_set(user=alice, target=Target("s1", "alt"), definition="quality", value=4)
    reviews.score_set(user=alice, target=Target("s1"), definition="failure", value="b")
    reviews.comment_add(user=alice, target=Target("s1", "main", 2), body="<b>bold</b> **md**")
    reviews.tag_add(user=alice, target=Target("s1", "alt", 2), tag="golden")
    reviews.review_status_set(user=alice, session_id="s1", status="in_review", assignee=alice)
    reviews.token_create(user=alice, name="laptop")
    return helpful


def definition_form(**fields) -> dict[str, str]:
    data = {
        "name": "speed",
        "kind": "numeric",
        "description": "",
        "min_value": "0",
        "max_value": "10",
        "labels": "[]",
        "position": "3",
    }
    data.update({key: str(value) for key, value in fields.items()})
    return data


# ---- Every page opens; permissions ---------------------------------------------------------


def test_every_list_and_change_page_opens(admin, scored):
    for model in MODELS:
        page = admin.get(list_url(model))
        assert page.status_code == 200, model
        model_class = {
            "scoredefinition": ScoreDefinition,
            "annotation": Annotation,
            "sessionreview": SessionReview,
            "auditentry": AuditEntry,
            "apitoken": ApiToken,
        }[model]
        for pk in model_class.objects.values_list("pk", flat=True):
            assert admin.get(change_url(model, pk)).status_code == 200, (model, pk)
    for model in ("scoredefinition", "apitoken"):
        assert admin.get(add_url(model)).status_code == 200
    for model in ("annotation", "sessionreview", "auditentry"):
        assert admin.get(add_url(model)).status_code == 403


def test_staff_without_permissions_is_refused(client, scored):
    staff_with(client)
    for model in MODELS:
        assert client.get(list_url(model)).status_code == 403, model


def test_staff_with_view_permissions_only_looks(client, scored):
    staff_with(client, "view_annotation", "view_scoredefinition", "view_apitoken")
    assert client.get(list_url("annotation")).status_code == 200
    assert client.get(list_url("auditentry")).status_code == 403
    definition = ScoreDefinition.objects.get(name="quality")
    page = client.get(change_url("scoredefinition", definition.pk))
    assert page.status_code == 200 and b'name="max_value"' not in page.content
    refused = client.post(change_url("scoredefinition", definition.pk), definition_form())
    assert refused.status_code == 403
    assert client.get(add_url("apitoken")).status_code == 403
    assert client.post(add_url("apitoken"), {"user": "1", "name": "x"}).status_code == 403
    assert ApiToken.objects.count() == 1


def test_staff_with_definition_permissions_edits(client, scored):
    staff_with(client, "view_scoredefinition", "add_scoredefinition", "change_scoredefinition")
    page = client.post(add_url("scoredefinition"), definition_form())
    assert page.status_code == 302
    assert ScoreDefinition.objects.get(name="speed").max_value == 10


# ---- Score definitions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "needle"),
    [
        ({"max_value": ""}, "min_value", "both a minimum and a maximum"),
        ({"min_value": "5", "max_value": "5"}, "max_value", "above the minimum"),
        ({"max_value": "inf"}, "max_value", "Enter a number"),
        ({"min_value": "nan"}, "min_value", "Enter a number"),
        ({"kind": "categorical", "labels": '["one"]'}, "labels", "at least two labels"),
        ({"kind": "categorical", "labels": '["a", "a"]'}, "labels", "must differ"),
        ({"kind": "categorical", "labels": '["a", 1]'}, "labels", "non-empty string"),
        ({"kind": "categorical", "labels": '{"a": 1}'}, "labels", "at least two labels"),
        ({"kind": "categorical", "labels": "[not json"}, "labels", "Enter a valid JSON"),
        ({"kind": "boolean", "labels": '["a", "b"]'}, "labels", "Only a categorical score"),
        ({"kind": "vote"}, "kind", "Select a valid choice"),
        ({"name": "has spaces"}, "name", "letters, numbers, underscores or hyphens"),
        ({"name": "helpful"}, "name", "already exists"),
    ],
)
def test_bad_definitions_are_refused_cleanly(admin, scored, fields, field, needle):
    before = ScoreDefinition.objects.count()
    page = admin.post(add_url("scoredefinition"), definition_form(**fields))
    assert page.status_code == 200
    errors = page.context["adminform"].form.errors
    assert field in errors, errors
    assert needle in " ".join(errors[field])
    assert ScoreDefinition.objects.count() == before


def test_a_categorical_definition_is_saved_with_its_labels(admin, db):
    page = admin.post(
        add_url("scoredefinition"),
        definition_form(name="failure-mode", kind="categorical", labels='["x", "y"]', min_value=""),
    )
    assert page.status_code == 302
    saved = ScoreDefinition.objects.get(name="failure-mode")
    assert (saved.labels, saved.min_value, saved.max_value) == (["x", "y"], None, None)


def _edit(admin, definition: ScoreDefinition, **fields):
    data = definition_form(
        name=definition.name,
        kind=definition.kind,
        min_value="" if definition.min_value is None else definition.min_value,
        max_value="" if definition.max_value is None else definition.max_value,
        labels=str(definition.labels).replace("'", '"'),
    )
    data.update({key: str(value) for key, value in fields.items()})
    return admin.post(change_url("scoredefinition", definition.pk), data)


def test_a_definition_in_use_keeps_its_scores_valid(admin, scored):
    quality = ScoreDefinition.objects.get(name="quality")
    failure = ScoreDefinition.objects.get(name="failure")
    refusals = [
        (_edit(admin, scored, kind="numeric", min_value=0, max_value=1), "kind", "cannot change"),
        (_edit(admin, quality, max_value=3), "max_value", "from 4 to 4"),
        (_edit(admin, failure, labels='["b", "a", "c"]'), "labels", "position 2"),
        (_edit(admin, failure, labels='["a", "c"]'), "labels", "position 2"),
    ]
    for page, field, needle in refusals:
        assert page.status_code == 200
        assert needle in " ".join(page.context["adminform"].form.errors[field])
    assert ScoreDefinition.objects.get(name="failure").labels == ["a", "b", "c"]
    # What keeps every stored score valid is fine: a wider range, labels added at the end.
    assert _edit(admin, quality, min_value=0, max_value=10).status_code == 302
    assert _edit(admin, failure, labels='["a", "b", "c", "d"]').status_code == 302
    assert ScoreDefinition.objects.get(name="failure").labels == ["a", "b", "c", "d"]


def test_deleting_a_definition_in_use_offers_archiving(admin, scored):
    url = reverse("admin:conversations_scoredefinition_delete", args=[scored.pk])
    for answer in (admin.get(url), admin.post(url, {"post": "yes"})):
        assert answer.status_code == 302
        assert answer["Location"] == change_url("scoredefinition", scored.pk)
    assert ScoreDefinition.objects.filter(pk=scored.pk).exists()
    page = admin.get(change_url("scoredefinition", scored.pk))
    text = page.content.decode()
    assert "cannot be deleted: 1 score use it" in text and "Archive it instead" in text
    # Archived: the definition stays with its scores, and the score bar no longer offers it.
    admin.post(
        list_url("scoredefinition"),
        {"action": "archive", "_selected_action": [scored.pk]},
    )
    scored.refresh_from_db()
    assert scored.archived
    with pytest.raises(reviews.ReviewError, match="archived"):
        reviews.score_set(
            user=User.objects.get(username="alice"),
            target=Target("s1"),
            definition=scored,
            value=1,
        )


def test_bulk_delete_spares_definitions_in_use(admin, scored):
    unused = ScoreDefinition.objects.create(name="unused", kind="boolean")
    page = admin.post(
        list_url("scoredefinition"),
        {"action": "delete_selected", "_selected_action": [scored.pk, unused.pk]},
    )
    assert page.status_code == 200  # Django's confirmation page lists the protected one
    assert "Cannot delete score definitions" in page.content.decode()
    assert ScoreDefinition.objects.filter(pk=scored.pk).exists()


def test_an_unused_definition_is_deleted(admin, db):
    unused = ScoreDefinition.objects.create(name="unused", kind="boolean")
    url = reverse("admin:conversations_scoredefinition_delete", args=[unused.pk])
    assert admin.get(url).status_code == 200
    assert admin.post(url, {"post": "yes"}).status_code == 302
    assert not ScoreDefinition.objects.filter(pk=unused.pk).exists()


# ---- Annotations, audit trail: read-only, filtered -------------------------------------------


def test_annotation_list_filters_and_search(admin, scored):
    page = admin.get(list_url("annotation"), {"kind__exact": "tag"})
    assert page.context["cl"].result_count == 1
    page = admin.get(list_url("annotation"), {"definition__id__exact": scored.pk})
    assert page.context["cl"].result_count == 1
    alice = User.objects.get(username="alice")
    assert (
        admin.get(list_url("annotation"), {"author__id__exact": alice.pk})
        .context["cl"]
        .result_count
        == 5
    )
    assert admin.get(list_url("annotation"), {"q": "s1"}).context["cl"].result_count == 5
    assert admin.get(list_url("annotation"), {"q": "s"}).context["cl"].result_count == 0
    # Comments show as escaped text, never as HTML.
    assert b"<b>bold</b>" not in admin.get(list_url("annotation")).content


def test_annotations_and_audit_cannot_be_changed_here(admin, scored):
    note = Annotation.objects.get(kind="comment")
    page = admin.get(change_url("annotation", note.pk))
    assert b'name="body"' not in page.content
    assert admin.post(change_url("annotation", note.pk), {"body": "x"}).status_code == 403
    entry = AuditEntry.objects.filter(kind="comment").get()
    page = admin.get(change_url("auditentry", entry.pk))
    assert "&lt;b&gt;bold&lt;/b&gt; **md**" in page.content.decode()
    assert admin.post(change_url("auditentry", entry.pk), {}).status_code == 403
    assert Annotation.objects.get(pk=note.pk).body == "<b>bold</b> **md**"
    # Deleting is moderation, which a superuser may (through reviews, audited; the audit trail
    # itself still cannot be deleted): tests/dashboard/review/test_annotation_moderation.py.
    delete = reverse("admin:conversations_annotation_delete", args=[note.pk])
    assert admin.post(delete, {"post": "yes"}).status_code == 302
    assert AuditEntry.objects.filter(kind="comment", action="moderated").count() == 1
    entry_delete = reverse("admin:conversations_auditentry_delete", args=[entry.pk])
    assert admin.post(entry_delete, {"post": "yes"}).status_code == 403


@pytest.mark.parametrize("model", ["annotation", "auditentry", "scoredefinition", "apitoken"])
def test_lists_run_a_constant_number_of_queries(admin, scored, model):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin.get(list_url(model)).status_code == 200
        return len(queries)

    small = count()
    alice = User.objects.get(username="alice")
    for n in range(3, 30):
        reviews.comment_add(user=alice, target=Target("s1"), body=f"note {n}")
        ScoreDefinition.objects.create(name=f"d{n}", kind="boolean")
        reviews.token_create(user=alice, name=f"t{n}")
    assert count() == small


# ---- Review statuses ---------------------------------------------------------------------------


def test_review_status_change_goes_through_reviews(admin, scored):
    bob = User.objects.create_user("bob", password="pw")
    page = admin.post(
        change_url("sessionreview", "s1"), {"status": "needs_fix", "assignee": str(bob.pk)}
    )
    assert page.status_code == 302
    review = SessionReview.objects.get(pk="s1")
    assert (review.status, review.assignee_id) == ("needs_fix", bob.pk)
    entry = AuditEntry.objects.filter(kind="review").order_by("-id").first()
    assert entry is not None
    assert entry.actor is not None and entry.actor.username == "root"
    assert (entry.before, entry.after) == (
        {"status": "in_review", "assignee": "alice"},
        {"status": "needs_fix", "assignee": "bob"},
    )
    refused = admin.post(change_url("sessionreview", "s1"), {"status": "done", "assignee": ""})
    assert refused.status_code == 200
    assert "status" in refused.context["adminform"].form.errors
    assert SessionReview.objects.get(pk="s1").status == "needs_fix"


# ---- API tokens -------------------------------------------------------------------------------


def test_a_new_token_is_shown_once_and_only_its_digest_kept(admin, scored):
    alice = User.objects.get(username="alice")
    page = admin.post(add_url("apitoken"), {"user": str(alice.pk), "name": "ci runner"})
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    text = page.content.decode()
    raw = re.search(r'value="(fv_[^"]+)"', text)
    assert raw is not None
    token = raw.group(1)
    assert "shown only this once" in text
    stored = ApiToken.objects.get(name="ci runner")
    assert stored.digest == hashlib.sha256(token.encode()).hexdigest()
    assert reviews.token_authenticate(raw=token) == alice
    # Never again: not on the list, not on its page, and the digest nowhere either.
    for url in (list_url("apitoken"), change_url("apitoken", stored.pk)):
        shown = admin.get(url).content.decode()
        assert token not in shown and stored.digest not in shown
        assert stored.prefix in shown
    # Nor in the admin log or any message storage.
    from django.contrib.admin.models import LogEntry

    assert token not in repr(list(LogEntry.objects.values()))


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("", "This field is required"),
        ("   ", "This field is required"),
        ("a\x00b", "Null characters are not allowed"),
        ("x" * 101, "at most 100"),
    ],
)
def test_bad_token_names_are_refused(admin, scored, name, needle):
    alice = User.objects.get(username="alice")
    page = admin.post(add_url("apitoken"), {"user": str(alice.pk), "name": name})
    assert page.status_code == 200
    assert needle in " ".join(page.context["adminform"].form.errors["name"])
    assert ApiToken.objects.count() == 1


def test_revoke_action(admin, scored):
    token = ApiToken.objects.get()
    other, raw = reviews.token_create(user=token.user, name="spare")
    answer = admin.post(list_url("apitoken"), {"action": "revoke", "_selected_action": [token.pk]})
    assert answer.status_code == 302
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
    assert ApiToken.objects.get(pk=other.pk).revoked_at is None
    assert reviews.token_authenticate(raw=raw) == token.user
    listing = admin.get(list_url("apitoken")).content.decode()
    assert "revoked" in listing
    # A token is revoked, never deleted.
    delete = reverse("admin:conversations_apitoken_delete", args=[token.pk])
    assert admin.post(delete, {"post": "yes"}).status_code == 403


def test_renaming_a_token_keeps_it(admin, scored):
    token = ApiToken.objects.get()
    digest = token.digest
    page = admin.post(change_url("apitoken", token.pk), {"name": "desktop"})
    assert page.status_code == 302
    token.refresh_from_db()
    assert (token.name, token.digest, token.revoked_at) == ("desktop", digest, None)
