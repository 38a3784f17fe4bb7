"""Optional forwarding of every entry, as one JSON line, to syslog for a SIEM (AU-5).

``AUDIT_SYSLOG_ADDRESS`` is ``udp://host:port``, ``tcp://host:port`` or a unix socket path. The
entry is sent after its transaction commits (an entry that rolled back is never forwarded) and
forwarding never fails the action: the trail in the database is the record, syslog a copy.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import socket
import threading
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from compliance.chain import format_timestamp

logger = logging.getLogger(__name__)
_handlers: dict[str, logging.handlers.SysLogHandler] = {}
_lock = threading.Lock()


def entry_as_dict(entry) -> dict:
    """The exported/forwarded form of an entry (also used by audit_export)."""
    return {
        "sequence": entry.sequence,
        "timestamp": format_timestamp(entry.timestamp),
        "actor_type": entry.actor_type,
        "actor_id": entry.actor_id,
        "actor_name": entry.actor_name,
        "department_id": entry.department_id,
        "department_slug": entry.department_slug,
        "event_type": entry.event_type,
        "outcome": entry.outcome,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "object_repr": entry.object_repr,
        "source_ip": entry.source_ip,
        "user_agent": entry.user_agent,
        "request_id": entry.request_id,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def _handler(address: str) -> logging.handlers.SysLogHandler:
    with _lock:
        handler = _handlers.get(address)
        if handler is None:
            parts = urlsplit(address)
            if parts.scheme in ("udp", "tcp"):
                if not parts.hostname or not parts.port:
                    raise ImproperlyConfigured(f"AUDIT_SYSLOG_ADDRESS={address!r} needs a host and a port")
                kind = socket.SOCK_DGRAM if parts.scheme == "udp" else socket.SOCK_STREAM
                handler = logging.handlers.SysLogHandler((parts.hostname, parts.port), socktype=kind)
            elif address.startswith("/"):
                handler = logging.handlers.SysLogHandler(address)
            else:
                raise ImproperlyConfigured(f"AUDIT_SYSLOG_ADDRESS={address!r}: use udp://, tcp:// or a socket path")
            handler.ident = "platform-audit: "
            handler.append_nul = False
            _handlers[address] = handler
        return handler


def forward_entry(payload: dict) -> None:
    """Send one entry; any failure is logged, never raised (called from transaction.on_commit)."""
    address = settings.AUDIT_SYSLOG_ADDRESS
    if not address:
        return
    try:
        handler = _handler(address)
        record = logging.LogRecord(
            "compliance.audit", logging.INFO, __file__, 0, json.dumps(payload, ensure_ascii=False), None, None
        )
        handler.emit(record)  # SysLogHandler.emit reports its own errors through handleError
    except Exception:  # forwarding must never fail the action
        logger.warning("audit entry %s could not be forwarded to syslog", payload.get("sequence"), exc_info=True)
