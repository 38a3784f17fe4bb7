"""Each app process says it is alive, so that redundancy is seen, not declared (BR-3).

A serving process (``manage.py serve``, the launcher of the Dockerfile, the systemd unit and the
compose file) starts ``heartbeat_start()``: a daemon thread that writes this process's row of
``ProcessHeartbeat`` every HEARTBEAT_SECONDS. The compliance report counts the processes seen
within ``heartbeat_window()`` and compares them with APP_PROCESSES. Nothing else starts it: a
one-off command, a shell or a test that imports the application is not a serving process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

logger = logging.getLogger(__name__)

# A process is counted as alive if it wrote within this many of its intervals (a missed beat
# or two under load is not an outage).
MISSED_BEATS_TOLERATED = 3
HEARTBEAT_KEEP = timedelta(days=1)
_started = threading.Event()
_process_id = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
_started_at = timezone.now()


def heartbeat_window() -> timedelta:
    return timedelta(seconds=settings.HEARTBEAT_SECONDS * MISSED_BEATS_TOLERATED)


def channel_layer_backend() -> str:
    return settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]


def heartbeat_write(*, process_id: str | None = None, hostname: str | None = None, now: datetime | None = None) -> None:
    """Write (or refresh) one process's heartbeat; by default this process's."""
    from compliance.models import ProcessHeartbeat

    now = now or timezone.now()
    ProcessHeartbeat.objects.update_or_create(
        process_id=process_id or _process_id,
        defaults={
            "hostname": hostname or socket.gethostname(),
            "pid": os.getpid(),
            "channel_layer": channel_layer_backend(),
            "started_at": _started_at,
            "seen_at": now,
        },
    )


def heartbeats_prune(*, now: datetime | None = None) -> int:
    """Forget processes not seen for HEARTBEAT_KEEP (each restart is a new process id)."""
    from compliance.models import ProcessHeartbeat

    now = now or timezone.now()
    deleted, _ = ProcessHeartbeat.objects.filter(seen_at__lt=now - HEARTBEAT_KEEP).delete()
    return deleted


def heartbeats_recent(*, now: datetime | None = None):
    from compliance.models import ProcessHeartbeat

    now = now or timezone.now()
    return ProcessHeartbeat.objects.filter(seen_at__gte=now - heartbeat_window()).order_by("hostname", "pid")


def _beat_forever(stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            heartbeat_write()
            heartbeats_prune()
        except DatabaseError:  # the database is away for a moment: the next beat tries again
            logger.warning("process heartbeat could not be written", exc_info=True)
        finally:
            close_old_connections()
        stop.wait(settings.HEARTBEAT_SECONDS)


_stop = threading.Event()


def heartbeat_start() -> bool:
    """Start this process's heartbeat thread (once); True if this call started it."""
    if _started.is_set():
        return False
    _started.set()
    threading.Thread(target=_beat_forever, args=(_stop,), name="process-heartbeat", daemon=True).start()
    return True
