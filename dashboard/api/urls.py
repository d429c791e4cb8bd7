"""The API (``/api/v1/``) and the token page (``/account/tokens/``), included by
``dashboard/urls.py``.

Everything under ``/api/v1/`` reaches :func:`.paths.dispatcher`'s view first, which routes on
the undecoded path against the NinjaAPI's own patterns (listed after it, so ``reverse()`` of
``api-v1:...`` names works as usual).
"""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path, re_path

from . import views
from .api import api
from .paths import dispatcher

API_PREFIX = "api/v1/"

_patterns, _app_name, _namespace = api.urls
_routed: list[URLPattern | URLResolver] = [
    re_path(r"^", dispatcher(_patterns, prefix="/" + API_PREFIX), name="dispatch"),
    *_patterns,
]

urlpatterns = [
    path(API_PREFIX, include((_routed, _app_name), namespace=_namespace)),
    path("account/tokens/", views.tokens, name="api_tokens"),
]
