"""What several checks of one report share: constants, value formatting, and the live sources
that are probed once per report (the TLS probe, the chain verification, the replicas, the last
backup) and cited by more than one control."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.utils.translation import gettext_noop as _

from compliance.report import Term

DEFAULT_ACCOUNT_NAMES = {"admin", "administrator", "root", "test", "guest", "sa", "system", "demo"}
DEPENDENCY_AUDIT_MAX_AGE = timedelta(days=7)
BACKUP_MAX_AGE = timedelta(days=7)
DIRECTORY_SYNC_MAX_AGE = timedelta(days=2)
AUDIT_ARCHIVE_MAX_AGE = timedelta(days=31)
INACTIVE_ACCOUNT_DAYS = 90
SESSION_SAMPLE = 500
AUDIT_SAMPLE = 100
NONE = Term(_("none"))


_cache: dict[str, Any] = {}


def build_started() -> None:
    """A new report: probes run again (each is run once per report, shared by its controls)."""
    _cache.clear()


def once(name: str, probe):
    if name not in _cache:
        _cache[name] = probe()
    return _cache[name]


def users():
    return get_user_model().objects


def listing(values) -> str:
    return ", ".join(str(v) for v in values)


def tls():
    from compliance.report_probes import tls_probe

    return once("tls", tls_probe)


def chain():
    from compliance.verification import audit_chain_verify

    return once("chain", audit_chain_verify)


def last_backup():
    from compliance.events import EventType
    from compliance.models import AuditEntry

    return (
        AuditEntry.objects.filter(event_type=EventType.BACKUP, outcome="success")
        .order_by("-sequence")
        .values("timestamp", "object_repr")
        .first()
    )


def replicas():
    from compliance.report_probes import replicas as replicas_probe

    return once("replicas", replicas_probe)
