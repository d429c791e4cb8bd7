"""Per-session summaries for the session list, kept current by database triggers.

See ``conversations/summaries.py``: Forkview's own tables (the SDK's are not altered), an index
per sort key, the triggers on the SDK's tables, and a backfill of every session already stored
(a file the SDK wrote before Forkview opened it is summarised here).
"""

from typing import Any

from django.db import migrations, models

from conversations import summaries


def create(apps: Any, schema_editor: Any) -> None:
    summaries.create(schema_editor.connection)


def drop(apps: Any, schema_editor: Any) -> None:
    summaries.drop(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("conversations", "0005_search_index")]

    # The tables are created by summaries.create (with their triggers); the ORM reads them
    # through unmanaged models.
    operations = [
        migrations.RunPython(create, drop, elidable=False),
        migrations.CreateModel(
            name="ListCount",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "tool",
                        "branched",
                        "day",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("tool", models.TextField()),
                ("branched", models.IntegerField()),
                ("day", models.TextField()),
                ("n", models.BigIntegerField()),
            ],
            options={
                "db_table": "forkview_list_counts",
                "managed": False,
            },
        ),
        migrations.CreateModel(
            name="SessionSummary",
            fields=[
                ("session_id", models.TextField(primary_key=True, serialize=False)),
                ("title_message_id", models.BigIntegerField(null=True)),
                ("title_seq", models.IntegerField(null=True)),
                ("title_key", models.TextField()),
                ("turn_count", models.IntegerField()),
                ("branch_count", models.IntegerField()),
                ("branched", models.IntegerField()),
                ("tools", models.TextField()),
                ("total_tokens", models.BigIntegerField()),
                ("created_at", models.DateTimeField(null=True)),
                ("updated_at", models.DateTimeField(null=True)),
                ("day", models.TextField()),
            ],
            options={
                "db_table": "forkview_session_summaries",
                "managed": False,
            },
        ),
        migrations.CreateModel(
            name="SessionTool",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "session_id",
                        "tool_name",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("session_id", models.TextField()),
                ("tool_name", models.TextField()),
                ("branched", models.IntegerField()),
                ("day", models.TextField()),
            ],
            options={
                "db_table": "forkview_session_tools",
                "managed": False,
            },
        ),
        migrations.CreateModel(
            name="ToolSessions",
            fields=[
                ("tool_name", models.TextField(primary_key=True, serialize=False)),
                ("sessions", models.IntegerField()),
            ],
            options={
                "db_table": "forkview_tools",
                "managed": False,
            },
        ),
    ]
