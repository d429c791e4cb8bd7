"""``forkview serve``: the production server (HTTP and websockets, N worker processes).

Uvicorn, the ASGI server the Agents SDK's own dependencies already bring (``mcp``), with its
process supervisor: ``--workers N`` forks N processes on one listening socket, each running
``dashboard.asgi.application`` (Django for HTTP, Channels for websockets; with ``REDIS_URL``
the workers share the channel layer, so a viewer on one worker sees turns chatted on another).
``X-Forwarded-Proto``/``X-Forwarded-For`` are honoured from ``--forwarded-allow-ips`` (the
proxy's address). Static files are collected (hashed, compressed) into the data directory
first, so no separate ``collectstatic`` step exists in a deploy.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.test.utils import override_settings


class Command(BaseCommand):
    help = "Serve Forkview for production: uvicorn with N worker processes (HTTP + websockets)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("FORKVIEW_HOST", "127.0.0.1"))
        parser.add_argument(
            "--port", type=int, default=int(os.environ.get("FORKVIEW_PORT", "8000"))
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=int(os.environ.get("FORKVIEW_WORKERS", "1")),
            help="Worker processes (default 1, or FORKVIEW_WORKERS). More than one process "
            "needs REDIS_URL, so websockets reach viewers on every worker.",
        )
        parser.add_argument(
            "--forwarded-allow-ips",
            default=os.environ.get("FORKVIEW_FORWARDED_ALLOW_IPS", "127.0.0.1"),
            help="Proxies whose X-Forwarded-* headers are trusted (comma-separated, '*': all).",
        )
        parser.add_argument(
            "--no-collectstatic",
            action="store_true",
            help="Skip collecting static files (already collected, e.g. in an image build).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        workers = options["workers"]
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        backend = str(settings.CHANNEL_LAYERS["default"]["BACKEND"])
        if workers > 1 and not backend.startswith("channels_redis"):
            raise CommandError(
                "--workers above 1 needs REDIS_URL: with the in-memory channel layer, live "
                "updates would reach only viewers on the worker that ran the turn"
            )
        env = dict(os.environ)
        if not options["no_collectstatic"]:
            manifest = settings.FORKVIEW_STATIC_MANIFEST_STORAGE
            with override_settings(STORAGES={**settings.STORAGES, "staticfiles": manifest}):
                call_command("collectstatic", interactive=False, verbosity=0)
            env[settings.FORKVIEW_STATIC_MANIFEST_ENV] = "1"  # workers serve the hashed names
        self.stdout.write(
            f"Forkview on http://{options['host']}:{options['port']}/ "
            f"({workers} worker{'s' if workers != 1 else ''})"
        )
        self.stdout.flush()
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "dashboard.asgi:application",
            *("--host", options["host"], "--port", str(options["port"])),
            *("--workers", str(workers), "--ws", "websockets", "--lifespan", "off"),
            *("--proxy-headers", "--forwarded-allow-ips", options["forwarded_allow_ips"]),
            *("--log-level", env.get("FORKVIEW_SERVER_LOG_LEVEL", "warning"), "--no-access-log"),
        ]
        # Replaced by uvicorn (its own process: signals from a container runtime reach it, and
        # every worker imports the settings afresh, with the manifest storage).
        os.execve(sys.executable, argv, env)
