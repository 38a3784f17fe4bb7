"""Every route the URL resolver knows, for tests that walk them all."""

from __future__ import annotations

from collections.abc import Iterator

from django.urls import URLPattern, URLResolver, get_resolver


def routes(patterns=None, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    """(path pattern text, URLPattern) for every route the resolver knows."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            yield from routes(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern), pattern
