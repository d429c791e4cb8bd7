"""An index for the insights page (dashboard/insights/selectors.py): model and tool spans of a
time range, ``WHERE kind IN (...) AND started_at >= ... AND started_at < ...``.

``fv_span_kind_model`` (kind, model, started_at) serves one model's range; across all models
the planner would scan the whole table. Plain SQL (the same statement on PostgreSQL and SQLite),
so the model state, and with it ``makemigrations``, stays as it is.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("conversations", "0009_traces")]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS fv_span_kind_started ON forkview_spans (kind, started_at)",
            reverse_sql="DROP INDEX IF EXISTS fv_span_kind_started",
        ),
    ]
