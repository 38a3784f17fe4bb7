"""Fixtures of the compliance tests: a private key, checkpoint log and export folder per test, the
audit administrator, a way to lift the audit triggers for the raw-SQL attacks, a UDP listener
and a TCP syslog sink."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
from django.db import connection

from compliance.triggers import GUARDED_TABLES, triggers_install, triggers_remove


@pytest.fixture(autouse=True)
def audit_files(settings, tmp_path):
    settings.AUDIT_SIGNING_KEY_FILE = tmp_path / "keys" / "audit_signing_key.pem"
    settings.AUDIT_CHECKPOINT_LOG = tmp_path / "audit" / "checkpoints.jsonl"
    settings.AUDIT_EXPORT_DIR = tmp_path / "audit" / "exports"
    settings.AUDIT_SYSLOG_ADDRESS = ""
    return tmp_path


@pytest.fixture
def auditor(make_user):
    """audrey, the audit administrator."""
    return make_user("audrey", admin_role="audit")


@contextlib.contextmanager
def triggers_lifted() -> Iterator[None]:
    """What an attacker with the table owner's rights does first (inside the test's transaction)."""
    _guard_triggers(enabled=False)
    try:
        yield
    finally:
        _guard_triggers(enabled=True)


def _guard_triggers(*, enabled: bool) -> None:
    if connection.vendor != "postgresql":
        if enabled:
            triggers_install(connection)
        else:
            triggers_remove(connection)
        return
    with connection.cursor() as cursor:
        for table in GUARDED_TABLES:
            cursor.execute(f"ALTER TABLE {table} {'ENABLE' if enabled else 'DISABLE'} TRIGGER USER")


def raw_sql(sql: str, params: list | tuple = ()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def udp_listener():
    """A SIEM's UDP syslog port on loopback (a socket with a 5 s read timeout)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        yield sock


class TcpSink:
    """A SIEM's TCP syslog port on loopback: reads whatever arrives into ``received``."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.received = bytearray()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                peer, _ = self.server.accept()
            except OSError:
                return
            with peer:
                while chunk := peer.recv(65536):
                    self.received.extend(chunk)

    def close(self) -> None:
        self.server.close()
