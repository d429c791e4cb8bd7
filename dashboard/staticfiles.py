"""The static files storage ``forkview serve`` collects with: hashed names, gzip-compressed copies.

WhiteNoise's ``CompressedManifestStaticFilesStorage``, except that ``sourceMappingURL``
comments are left as they are: the vendored, minified Chart.js names a source map it does
not ship, and Django's storage would refuse to collect it (a browser asks for the map only
when its developer tools are open; a 404 there is harmless).
"""

from __future__ import annotations

from typing import Any

from whitenoise.storage import (  # type: ignore[import-untyped]  # WhiteNoise ships no types
    CompressedManifestStaticFilesStorage,
)

__all__ = ["ForkviewStaticStorage"]


def _without_source_maps(patterns: Any) -> tuple[Any, ...]:
    def keep(pattern: Any) -> bool:
        text = pattern if isinstance(pattern, str) else pattern[0]
        return "sourceMappingURL" not in text

    return tuple((ext, tuple(p for p in group if keep(p))) for ext, group in patterns)


class ForkviewStaticStorage(CompressedManifestStaticFilesStorage):  # type: ignore[misc]
    patterns = _without_source_maps(CompressedManifestStaticFilesStorage.patterns)
