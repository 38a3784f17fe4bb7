"""What the production profile refuses to start with, beyond single settings (settings.py).

- SQLite: one writer at a time, no streaming replica, no server-side audit sealing; the
  platform's guarantees (AU-3/AU-4 triggers as PL/pgSQL, BR-2/BR-3 replicas) are PostgreSQL's.
- An in-memory channel layer when the deployment declares more than one app process
  (APP_PROCESSES): websocket events of one process would never reach another. The compliance
  report compares APP_PROCESSES with the processes that actually report a heartbeat (BR-3).
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

SQLITE_REFUSED = (
    "DATABASE_URL names SQLite; the production profile requires PostgreSQL (e.g. postgres://app@db/platform)"
)
IN_MEMORY_LAYER_REFUSED = (
    "APP_PROCESSES={processes} declares several app processes, but without REDIS_URL the channel layer is "
    "in-memory (one process's websocket events never reach another): set REDIS_URL"
)


def production_refusals(*, database_engine: str, channel_layer_backend: str, app_processes: int) -> None:
    """Raise ImproperlyConfigured for the first thing production cannot run with."""
    if database_engine != "django.db.backends.postgresql":
        raise ImproperlyConfigured(SQLITE_REFUSED)
    if app_processes > 1 and channel_layer_backend.endswith("InMemoryChannelLayer"):
        raise ImproperlyConfigured(IN_MEMORY_LAYER_REFUSED.format(processes=app_processes))
