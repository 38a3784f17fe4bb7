"""Optional forwarding of every entry, as one JSON line, to syslog for a SIEM (AU-5).

``AUDIT_SYSLOG_ADDRESS`` is ``tcp://host:port``, ``tls://host:port`` (certificate checked against
TLS_CA_BUNDLE), ``udp://host:port`` or a unix socket path. The entry is sent after its transaction
commits (an entry that rolled back is never forwarded) and forwarding never fails the action: the
trail in the database is the record, syslog a copy. It carries what the chain holds: hashes and
sealed previews (ciphertext, compliance/preview_crypto.py), never a readable preview.

Over TCP and TLS a send that fails raises here, so the last entry the target accepted is known:
it is recorded in ``AuditForwardState`` (at most once a minute per process; a failure at once)
and the compliance report reads it (AU-5). UDP and a local socket are fire and forget: nothing
says the target received anything, so the report can only ask the assessor to look.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import socket
import threading
import time
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.utils import timezone

from compliance.chain import format_timestamp
from compliance.preview_crypto import forwarding_details

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


ACKNOWLEDGED_TRANSPORTS = ("tcp", "tls")
# The forwarding state row is written at most this often per process on success (a database
# write per forwarded entry would double the cost of auditing); a failure is written at once.
STATE_WRITE_INTERVAL_SECONDS = 60
_SYSLOG_PRIORITY = "<110>"  # facility log_audit (13) * 8 + severity informational (6)


def transport_of(address: str) -> str:
    """udp, tcp, tls or unix (a socket path); ImproperlyConfigured for anything else."""
    if address.startswith("/"):
        return "unix"
    parts = urlsplit(address)
    if parts.scheme in ("udp", "tcp", "tls"):
        if not parts.hostname or not parts.port:
            raise ImproperlyConfigured(f"AUDIT_SYSLOG_ADDRESS={address!r} needs a host and a port")
        return parts.scheme
    raise ImproperlyConfigured(f"AUDIT_SYSLOG_ADDRESS={address!r}: use tcp://, tls://, udp:// or a socket path")


def _handler(address: str) -> logging.handlers.SysLogHandler:
    """UDP and unix sockets: fire and forget, through the standard library's handler."""
    with _lock:
        handler = _handlers.get(address)
        if handler is None:
            if transport_of(address) == "udp":
                parts = urlsplit(address)
                handler = logging.handlers.SysLogHandler((parts.hostname, parts.port), socktype=socket.SOCK_DGRAM)
            else:
                handler = logging.handlers.SysLogHandler(address)
            handler.ident = "platform-audit: "
            handler.append_nul = False
            _handlers[address] = handler
        return handler


class _StreamSender:
    """TCP or TLS (RFC 5425 style, one line per entry): a failed send raises, so that a success
    can be recorded only when the target's TCP stack took the bytes."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.transport = transport_of(address)
        parts = urlsplit(address)
        self.host, self.port = parts.hostname, parts.port
        self.sock: socket.socket | None = None
        self.lock = threading.Lock()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=5)
        if self.transport == "tls":
            import ssl

            context = ssl.create_default_context(cafile=str(settings.TLS_CA_BUNDLE) if settings.TLS_CA_BUNDLE else None)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            sock = context.wrap_socket(sock, server_hostname=self.host)
        return sock

    def send(self, line: bytes) -> None:
        with self.lock:
            for attempt in (1, 2):  # a connection the target closed since is reopened once
                try:
                    if self.sock is None:
                        self.sock = self._connect()
                    self.sock.sendall(line)
                    return
                except OSError:
                    self.close()
                    if attempt == 2:
                        raise

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None


_senders: dict[str, _StreamSender] = {}
_last_state_write: dict[str, float] = {}


def _sender(address: str) -> _StreamSender:
    with _lock:
        sender = _senders.get(address)
        if sender is None:
            sender = _senders[address] = _StreamSender(address)
        return sender


def _state_record(address: str, transport: str, *, sequence: int | None, failure: str = "") -> None:
    """Remember the last accepted entry (throttled) or the failure (at once), for the report."""
    from compliance.models import AuditForwardState

    now = time.monotonic()
    if not failure and now - _last_state_write.get(address, -1e9) < STATE_WRITE_INTERVAL_SECONDS:
        return
    _last_state_write[address] = now if not failure else -1e9
    values = {"transport": transport}
    if failure:
        values.update(last_failure_at=timezone.now(), last_failure=failure[:500])
    else:
        values.update(last_success_at=timezone.now(), last_success_sequence=sequence)
    try:
        AuditForwardState.objects.update_or_create(address=address, defaults=values)
    except DatabaseError:
        logger.warning("the audit forwarding state could not be recorded", exc_info=True)


def forward_entry(payload: dict) -> None:
    """Send one entry; any failure is logged, never raised (called from transaction.on_commit)."""
    address = settings.AUDIT_SYSLOG_ADDRESS
    if not address:
        return
    # Hashes and ciphertext only: a preview is shipped sealed, never readable.
    payload = {**payload, "details": forwarding_details(payload.get("details") or {})}
    text = json.dumps(payload, ensure_ascii=False)
    try:
        transport = transport_of(address)
        if transport in ACKNOWLEDGED_TRANSPORTS:
            _sender(address).send(f"{_SYSLOG_PRIORITY}platform-audit: {text}\n".encode())
            _state_record(address, transport, sequence=payload.get("sequence"))
            return
        record = logging.LogRecord("compliance.audit", logging.INFO, __file__, 0, text, None, None)
        _handler(address).emit(record)  # SysLogHandler.emit reports its own errors through handleError
    except Exception as exc:  # forwarding must never fail the action
        logger.warning("audit entry %s could not be forwarded to syslog", payload.get("sequence"), exc_info=True)
        with contextlib.suppress(Exception):
            _state_record(address, transport_of(address), sequence=None, failure=f"{type(exc).__name__}: {exc}")
