"""Liveness and readiness endpoints.

``/healthz`` answers as long as the process serves requests. ``/readyz`` runs every registered
readiness check (database first; apps add theirs with ``register_readiness_check``) and answers
503 naming the checks that failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)

ReadinessCheck = Callable[[], tuple[bool, str]]
_readiness_checks: dict[str, ReadinessCheck] = {}


def register_readiness_check(name: str, check: ReadinessCheck) -> None:
    """Add a check to /readyz; it returns (ok, detail) and must be quick."""
    _readiness_checks[name] = check


def database_ready() -> tuple[bool, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return True, connection.vendor


register_readiness_check("database", database_ready)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    results = {}
    ready = True
    for name, check in _readiness_checks.items():
        try:
            ok, detail = check()
        except Exception as exc:  # a failing dependency must answer 503, not 500
            logger.warning("readiness check %s failed: %s", name, exc)
            ok, detail = False, type(exc).__name__
        results[name] = {"ok": ok, "detail": detail}
        ready = ready and ok
    return JsonResponse({"status": "ready" if ready else "not ready", "checks": results}, status=200 if ready else 503)
