"""The message search index, kept current by the database for every writer.

SQLite: an FTS5 table filled by triggers on ``agent_messages``; PostgreSQL: a GIN expression
index over each item's text (replacing ``0003``'s index over the whole JSON). Existing rows
are indexed here. The DDL lives in ``conversations.search_index``; see its docstring.
"""

from django.db import migrations

from conversations import search_index


def create_index(apps, schema_editor):
    search_index.create(schema_editor)


def drop_index(apps, schema_editor):
    search_index.drop(schema_editor)


class Migration(migrations.Migration):
    dependencies = [("conversations", "0004_preferred_branch")]

    operations = [migrations.RunPython(create_index, drop_index, elidable=False)]
