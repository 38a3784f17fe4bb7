"""Retention: expire business data per department policy, and old audit entries after export.

Business data lives in other apps (files in ``assets``, conversations in ``inference``); each
registers a purger from its ``AppConfig.ready``::

    register_purger("assets", asset_purge_expired)  # files: days_field="file_days"

``days_field`` names the policy field that sets the purger's age (``file_days``, the default, or
``conversation_days``). A purger is called with keyword arguments
``(department=, cutoff=, dry_run=)`` plus ``policy=`` if it accepts it; it removes (crypto-shreds)
what of ``department`` is older than ``cutoff`` and returns how many objects it removed (or would
remove, with ``dry_run``). ``purge_expired`` calls each inside its own transaction together with
the audit entry, skips departments under legal hold, and is idempotent (a second run finds
nothing). Audit entries are purged only when older than ``AUDIT_RETENTION_DAYS`` (never below
180), covered by a complete export, and after the cut is recorded as an anchor (see
``compliance/triggers.py`` for the database's own enforcement).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from compliance.checkpoints import KIND_ANCHOR, checkpoint_sign
from compliance.events import EventType
from compliance.models import AuditAnchor, AuditArchive, AuditChainHead, AuditEntry, RetentionPolicy
from compliance.services import audit_record
from departments.tenancy import all_departments

logger = logging.getLogger(__name__)

Purger = Callable[..., int]
POLICY_DAY_FIELDS = ("conversation_days", "file_days")
UNKNOWN_DAYS_FIELD = "days_field must be one of: conversation_days, file_days"


@dataclass(frozen=True)
class RegisteredPurger:
    name: str
    purger: Purger
    days_field: str


_registry: dict[str, RegisteredPurger] = {}


def register_purger(name: str, purger: Purger, *, days_field: str = "file_days") -> None:
    """Register (or replace, by name) the purger of one kind of business data."""
    if days_field not in POLICY_DAY_FIELDS:
        raise ValueError(UNKNOWN_DAYS_FIELD)
    _registry[name] = RegisteredPurger(name, purger, days_field)


def unregister_purger(name: str) -> None:
    _registry.pop(name, None)


def registered_purgers() -> list[RegisteredPurger]:
    return list(_registry.values())


def _call(purger: Purger, **arguments) -> int:
    parameters = inspect.signature(purger).parameters
    if not any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
        arguments = {name: value for name, value in arguments.items() if name in parameters}
    return purger(**arguments)


@dataclass
class PurgeReport:
    dry_run: bool
    business: dict[str, dict[str, int]] = field(default_factory=dict)  # department slug -> purger -> count
    held: list[str] = field(default_factory=list)
    audit_removed: int = 0
    audit_anchor: int | None = None

    @property
    def business_total(self) -> int:
        return sum(sum(counts.values()) for counts in self.business.values())


def business_data_purge(*, dry_run: bool = False, now: datetime | None = None, report: PurgeReport) -> None:
    now = now or timezone.now()
    with all_departments(reason="retention purge of expired business data"):
        policies = list(RetentionPolicy.objects.select_related("department").order_by("department__slug"))
    for policy in policies:
        department = policy.department
        if policy.legal_hold:
            report.held.append(department.slug)
            continue
        for registered in registered_purgers():
            days = getattr(policy, registered.days_field)
            if not days:
                continue
            cutoff = now - timedelta(days=days)
            # Each purger's removal and its audit entry commit together, department by department.
            with transaction.atomic():
                count = int(
                    _call(registered.purger, department=department, policy=policy, cutoff=cutoff, dry_run=dry_run)
                )
                if count and not dry_run:
                    audit_record(
                        event_type=EventType.RETENTION_PURGE,
                        actor="system",
                        department=department,
                        obj=policy,
                        details={
                            "purger": registered.name,
                            "removed": count,
                            "cutoff": cutoff.isoformat(),
                            "days": days,
                        },
                    )
            if count:
                report.business.setdefault(department.slug, {})[registered.name] = count


def audit_purge_plan(*, now: datetime | None = None) -> tuple[int, int, AuditArchive | None]:
    """(first, last, archive) of the entries the audit purge may remove; last < first: none.

    ``last`` is the newest sequence such that every entry up to it is older than the retention
    period (timestamps are not trusted to be monotonic) and covered by complete archives.
    """
    now = now or timezone.now()
    days = max(settings.AUDIT_RETENTION_DAYS, settings.AUDIT_RETENTION_FLOOR_DAYS)
    cutoff = now - timedelta(days=days)
    anchor = AuditAnchor.objects.order_by("-sequence").first()
    first = anchor.sequence + 1 if anchor else 1
    youngest = (
        AuditEntry.objects.filter(sequence__gte=first, timestamp__gte=cutoff)
        .order_by("sequence")
        .values_list("sequence", flat=True)
        .first()
    )
    last = (youngest - 1) if youngest is not None else AuditChainHead.objects.get(pk=1).sequence
    covered_to, covering = first - 1, None
    for archive in AuditArchive.objects.filter(complete=True, last_sequence__gte=first).order_by("first_sequence"):
        if archive.first_sequence > covered_to + 1:
            break
        if archive.last_sequence > covered_to:
            covered_to, covering = archive.last_sequence, archive
    last = min(last, covered_to)
    return first, last, covering if last >= first else None


def audit_entries_purge(*, dry_run: bool = False, now: datetime | None = None, report: PurgeReport) -> None:
    first, last, archive = audit_purge_plan(now=now)
    if archive is None:
        return
    report.audit_removed, report.audit_anchor = last - first + 1, last
    if dry_run:
        return
    cut_hash = AuditEntry.objects.values_list("hash", flat=True).get(sequence=last)
    # Signed first: a signed anchor without its database row is harmless, the reverse is not.
    checkpoint_sign(sequence=last, hash=cut_hash, kind=KIND_ANCHOR)
    with transaction.atomic():
        AuditAnchor.objects.create(sequence=last, hash=cut_hash, archive=archive, removed=last - first + 1)
        with connection.cursor() as cursor:
            # The one sanctioned DELETE: the trigger re-checks age, export and anchor row by row.
            cursor.execute("DELETE FROM compliance_auditentry WHERE sequence >= %s AND sequence <= %s", [first, last])
            removed = cursor.rowcount
        audit_record(
            event_type=EventType.AUDIT_PURGE,
            actor="system",
            object_type="compliance.auditanchor",
            object_id=str(last),
            details={
                "first_sequence": first,
                "last_sequence": last,
                "removed": removed,
                "anchor_hash": cut_hash,
                "archive_sha256": archive.sha256,
                "retention_days": settings.AUDIT_RETENTION_DAYS,
            },
        )


def purge_expired(*, dry_run: bool = False, now: datetime | None = None, include_audit: bool = True) -> PurgeReport:
    report = PurgeReport(dry_run=dry_run)
    business_data_purge(dry_run=dry_run, now=now, report=report)
    if include_audit:
        audit_entries_purge(dry_run=dry_run, now=now, report=report)
    return report


@transaction.atomic
def retention_policy_set(
    *,
    department,
    conversation_days: int | None,
    file_days: int | None,
    legal_hold: bool = False,
    acting_user=None,
) -> RetentionPolicy:
    """Create or change a department's policy; audited with before/after (security administrator)."""
    # Validation (unique department) queries the scoped manager: this write concerns one known
    # department but is made from the administration console, outside any /d/<slug>/ scope.
    with all_departments(reason="the security administrator sets a department's retention policy"):
        policy = RetentionPolicy.objects.select_for_update().filter(department=department).first()
        before = {}
        if policy is None:
            policy = RetentionPolicy(department=department)
        else:
            before = {name: getattr(policy, name) for name in ("conversation_days", "file_days", "legal_hold")}
        policy.conversation_days, policy.file_days, policy.legal_hold = conversation_days, file_days, legal_hold
        policy.full_clean()
        policy.save()
        audit_record(
            event_type=EventType.RETENTION_POLICY_CHANGE,
            actor=acting_user,
            department=department,
            obj=policy,
            details={
                "before": before,
                "after": {"conversation_days": conversation_days, "file_days": file_days, "legal_hold": legal_hold},
            },
        )
        return policy
