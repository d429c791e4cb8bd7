"""A GIN full-text index for the review UI's message search (PostgreSQL only).

The expression is exactly what ``dashboard.review.selectors.search.search_hits`` filters on
(``SearchVector(Cast("message_data", TextField()), config="english")``), so the planner can
use it. SQLite has no equivalent; the search there is a substring scan. The SDK's own schema
is untouched: an extra index never stops ``AdvancedSQLiteSession`` from opening a database.
"""

from django.db import migrations

INDEX = "idx_agent_messages_fts"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON agent_messages USING GIN "
        "(to_tsvector('english'::regconfig, COALESCE((message_data)::text, '')))"
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("conversations", "0002_continue_permission")]

    operations = [migrations.RunPython(create_index, drop_index, elidable=False)]
