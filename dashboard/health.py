"""``/healthz``: whether this process can serve, for load balancers and orchestrators.

The one page without login, so it says nothing but ``ok`` / ``unavailable``: 200 when the
database answers a query and the channel layer carries a message (a round trip to Redis when
``REDIS_URL`` is set), 503 otherwise. What failed goes to the log, not to the caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

__all__ = ["healthz"]

logger = logging.getLogger(__name__)

#: Seconds each check may take before the process counts as unavailable.
CHECK_SECONDS = 2.0


def _database_ok() -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        row = cursor.fetchone()
    return row is not None and tuple(row) == (1,)


async def _channel_layer_ok() -> bool:
    layer = get_channel_layer()
    if layer is None:
        return False
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "healthz.ping"})
    message = await layer.receive(channel)
    return bool(message.get("type") == "healthz.ping")


async def _check(name: str, probe: Awaitable[bool]) -> bool:
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            return await probe
    except Exception:
        logger.warning("healthz: %s unavailable", name, exc_info=True)
        return False


@never_cache
@require_safe
async def healthz(request: HttpRequest) -> JsonResponse:
    """``{"status": "ok"}`` (200) or ``{"status": "unavailable"}`` (503); no login."""
    database, layer = await asyncio.gather(
        _check("database", sync_to_async(_database_ok)()),
        _check("channel layer", _channel_layer_ok()),
    )
    ok = database and layer
    return JsonResponse({"status": "ok" if ok else "unavailable"}, status=200 if ok else 503)
