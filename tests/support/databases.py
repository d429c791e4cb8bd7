"""The test database as a ``DATABASE_URL``, for tests that start real worker processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest


def database_url(settings: dict[str, Any]) -> str:
    """A DATABASE_URL for the database this test actually uses (pytest-django's test DB)."""
    name = str(settings["NAME"])
    if settings["ENGINE"] == "django.db.backends.sqlite3":
        if name == ":memory:" or name.startswith("file:"):
            pytest.skip("multi-process tests need a file or server database")
        return f"sqlite:///{Path(name).resolve()}"
    if settings["ENGINE"] == "django.db.backends.postgresql":
        user = quote(settings.get("USER") or "", safe="")
        password = quote(settings.get("PASSWORD") or "", safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = settings.get("HOST") or "localhost"
        port = f":{settings['PORT']}" if settings.get("PORT") else ""
        return f"postgres://{auth}{host}{port}/{quote(name, safe='')}"
    pytest.skip(f"unsupported engine {settings['ENGINE']}")
