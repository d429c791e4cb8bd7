"""The ``forkview`` command: ``manage.py`` for an installed Forkview.

``forkview migrate``, ``forkview createsuperuser``, ``forkview seed_demo``, ``forkview serve``
... run exactly what ``python manage.py ...`` runs in a checkout (the same settings module,
``dashboard.settings``, unless ``DJANGO_SETTINGS_MODULE`` names another).
"""

from __future__ import annotations

import os
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv if argv is None else argv)
