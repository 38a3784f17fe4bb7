"""How a file's bytes (or a picture of them) are answered, wherever they are served."""

from __future__ import annotations

from django.http import HttpResponseBase

# Served bytes are never interpreted by the browser: no scripts, no plugins, no framing.
LOCKED_DOWN_CSP = "default-src 'none'; sandbox"


def locked_down(response: HttpResponseBase) -> HttpResponseBase:
    """Never sniffed, never run, never kept by a cache."""
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = LOCKED_DOWN_CSP
    response["Cache-Control"] = "private, no-store"
    return response
