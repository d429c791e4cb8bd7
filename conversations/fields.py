"""Field and expression helpers that keep the ORM's view of the SDK's columns exact."""

from __future__ import annotations

import json
from typing import Any

from django.db import models
from django.db.models.fields.json import KeyTransform


class RawJSON(str):
    """JSON text that is already serialized; stored as is, not dumped again."""

    __slots__ = ()


class UndecodableJSON(str):
    """A stored value that is not valid JSON (the SDK skips such rows; so do we).

    It keeps the raw text so the admin and the importers can show what is there.
    """

    __slots__ = ()


class SDKJSONField(models.JSONField):
    """A JSONField that reads and writes the SDK's encoding.

    - TEXT on SQLite holding ``json.dumps(item)`` (what ``SQLiteSession`` writes), jsonb on
      PostgreSQL (queryable with Django's JSON lookups).
    - Accepts :class:`RawJSON` to skip a second ``json.dumps`` of text serialized earlier.
    - Returns :class:`UndecodableJSON` for a stored value that does not decode, instead of
      passing the raw string off as a JSON string value.
    """

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            if isinstance(expression, KeyTransform):
                return value
            return UndecodableJSON(value)

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if isinstance(value, RawJSON):
            if connection.vendor == "postgresql":
                from django.db.backends.postgresql.psycopg_any import Jsonb

                return Jsonb(value, dumps=str)
            return str(value)
        return super().get_db_prep_value(value, connection, prepared)


class CurrentTimestamp(models.Func):
    """SQL ``CURRENT_TIMESTAMP``: the SDK's column default.

    On SQLite it yields UTC text with second resolution (``YYYY-MM-DD HH:MM:SS``), exactly
    what the SDK writes; Django's ``Now()`` would add fractional seconds there.
    """

    template = "CURRENT_TIMESTAMP"
    output_field = models.DateTimeField()

    def __init__(self) -> None:
        super().__init__()
