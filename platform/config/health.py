"""Liveness and readiness endpoints.

``/healthz`` answers as long as the process serves requests. ``/readyz`` runs every registered
readiness check (database first; apps add theirs with ``register_readiness_check``) and answers
503 when one fails; the checks and their details (which name internals: a model's load error,
the database vendor) only to an operator — the metrics token or an administration network —,
anyone else (a load balancer) gets the status alone. A check whose function has a ``progress``
attribute (a callable returning a dict, or None) reports it while it fails: the model's load
says its stage and seconds, and the answer's status is "loading" while that is all that is
missing. A check with a ``models`` attribute (the model check) lists each model loaded at once
with its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.permissions import Action, public, request_allowed

logger = logging.getLogger(__name__)

ReadinessCheck = Callable[[], tuple[bool, str]]
_readiness_checks: dict[str, ReadinessCheck] = {}


def register_readiness_check(name: str, check: ReadinessCheck) -> None:
    """Add a check to /readyz; it returns (ok, detail) and must be quick."""
    _readiness_checks[name] = check


@contextlib.contextmanager
def readiness_check_registered(name: str, check: ReadinessCheck) -> Iterator[None]:
    """Inside the block, /readyz runs ``check`` under ``name``; afterwards whatever check stood
    under that name before (or none) stands again. For tests and short-lived components."""
    before = _readiness_checks.get(name)
    _readiness_checks[name] = check
    try:
        yield
    finally:
        if before is None:
            _readiness_checks.pop(name, None)
        else:
            _readiness_checks[name] = before


def database_ready() -> tuple[bool, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return True, connection.vendor


def channel_layer_ready() -> tuple[bool, str]:
    """A message through the channel layer and back (Redis across processes, or in-memory)."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()

    async def round_trip() -> bool:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "readiness.ping"})
        message = await asyncio.wait_for(layer.receive(channel), timeout=2)
        return message.get("type") == "readiness.ping"

    return async_to_sync(round_trip)(), type(layer).__name__


def storage_ready() -> tuple[bool, str]:
    """DATA_DIR and the asset store accept writes (a full or read-only disk is not ready)."""
    directories = [Path(settings.DATA_DIR)]
    if getattr(settings, "ASSET_STORAGE_DIR", None):
        directories.append(Path(settings.ASSET_STORAGE_DIR))
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".readyz-"):
            pass
    return True, "writable"


def audit_signing_key_ready() -> tuple[bool, str]:
    """The checkpoint signing key is there (outside production it is generated on first use)."""
    path = getattr(settings, "AUDIT_SIGNING_KEY_FILE", None)
    if path is None:
        return False, "AUDIT_SIGNING_KEY_FILE is not configured"
    if Path(path).is_file() and os.access(path, os.R_OK):
        return True, "present"
    if settings.IS_PRODUCTION:
        return False, "missing or unreadable"
    return True, "generated on first use"


register_readiness_check("database", database_ready)
register_readiness_check("channel_layer", channel_layer_ready)
register_readiness_check("storage", storage_ready)
register_readiness_check("audit_signing_key", audit_signing_key_ready)


@public(Action.HEALTH)
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@public(Action.HEALTH)
@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    results = {}
    ready = True
    loading_only = True  # every failing check is one still loading
    for name, check in _readiness_checks.items():
        progress = None
        try:
            ok, detail = check()
            progress = None if ok else _progress_of(check)
        except Exception as exc:  # a failing dependency must answer 503, not 500
            logger.warning("readiness check %s failed: %s", name, exc)
            ok, detail = False, type(exc).__name__
        results[name] = {"ok": ok, "detail": detail, **({"progress": progress} if progress else {})}
        models = getattr(check, "models", None)  # the model check: each model loaded at once
        if models is not None:
            try:
                listed = models()
            except Exception as exc:
                logger.warning("readiness check %s could not list its models: %s", name, exc)
                listed = None
            if listed is not None:
                results[name]["models"] = listed
        ready = ready and ok
        loading_only = loading_only and (ok or bool(progress))
    status = "ready" if ready else (READY_STATUS_LOADING if loading_only else "not ready")
    code = 200 if ready else 503
    if not request_allowed(request, Action.METRICS):  # an operator's, as /metrics (nothing recorded)
        return JsonResponse({"status": status}, status=code)  # the details name internals
    return JsonResponse({"status": status, "checks": results}, status=code)


READY_STATUS_LOADING = "loading"


def _progress_of(check: ReadinessCheck) -> dict | None:
    progress = getattr(check, "progress", None)
    return progress() if progress is not None else None
