"""Syslog forwarding: sent on commit only, never failing the action."""

from __future__ import annotations

import json

import pytest
from django.db import transaction

from compliance.events import EventType
from compliance.models import AuditEntry
from compliance.services import audit_record
from scripts.throwaway_services import free_port

pytestmark = pytest.mark.django_db


def test_committed_entry_is_forwarded_as_json(settings, udp_listener, django_capture_on_commit_callbacks):
    settings.AUDIT_SYSLOG_ADDRESS = f"udp://127.0.0.1:{udp_listener.getsockname()[1]}"
    with django_capture_on_commit_callbacks(execute=True):
        entry = audit_record(event_type=EventType.LOGIN_FAILED, outcome="failure", details={"username": "张三"})
    message = udp_listener.recv(65535).decode()
    assert message.startswith("<") and "platform-audit: " in message
    payload = json.loads(message.split("platform-audit: ", 1)[1])
    assert (payload["sequence"], payload["hash"], payload["details"]) == (
        entry.sequence,
        entry.hash,
        {"username": "张三"},
    )


def test_rolled_back_entry_is_not_forwarded(settings, udp_listener, django_capture_on_commit_callbacks):
    settings.AUDIT_SYSLOG_ADDRESS = f"udp://127.0.0.1:{udp_listener.getsockname()[1]}"
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            audit_record(event_type=EventType.LOGIN)
            raise RuntimeError("the action failed")
    assert callbacks == []


def test_unreachable_syslog_never_fails_the_action(settings, django_capture_on_commit_callbacks, caplog):
    settings.AUDIT_SYSLOG_ADDRESS = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    with django_capture_on_commit_callbacks(execute=True):
        entry = audit_record(event_type=EventType.LOGIN)
    assert AuditEntry.objects.filter(sequence=entry.sequence).exists()
    assert "could not be forwarded" in caplog.text
