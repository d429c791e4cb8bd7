"""Costs recorded with the spans, and each session's recorded cost in its summary (issue 16).

``AgentSpan.cost_nanos``: a model call's cost in billionths of a dollar, priced when the span
is written (``conversations.costs``); existing model spans are priced here. The session
summaries gain ``cost_nanos``, ``model_calls`` and ``unpriced_calls``, kept by triggers on
``forkview_traces`` and ``forkview_spans`` (``conversations/summaries.py``, "Costs"), with an
index for the session list's cost sort.
"""

from typing import Any

from django.db import migrations, models


def price_existing(apps: Any, schema_editor: Any) -> None:
    from conversations.costs import reprice_spans

    reprice_spans(apps.get_model("conversations", "AgentSpan"), using=schema_editor.connection.alias)


def create(apps: Any, schema_editor: Any) -> None:
    from conversations import summaries

    summaries.create_costs(schema_editor.connection)


def drop(apps: Any, schema_editor: Any) -> None:
    from conversations import summaries

    summaries.drop_costs(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("conversations", "0010_span_kind_started_index")]

    operations = [
        migrations.AddField(
            model_name="agentspan",
            name="cost_nanos",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(price_existing, migrations.RunPython.noop),
        migrations.RunPython(create, drop),
    ]
