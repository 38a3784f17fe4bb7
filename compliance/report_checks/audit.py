"""The compliance report's checks: 安全审计 security audit (AU-1..5)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext_noop as _

from compliance.report import Evidence, Term, control, line, manual, not_applicable
from compliance.report_checks.live import (
    AUDIT_ARCHIVE_MAX_AGE,
    AUDIT_SAMPLE,
    NONE,
    chain,
    listing,
)

AUDIT_WINDOW_DAYS = 30
# What AU-1 names: logins, failures, lockouts, role changes, uploads, downloads, model calls,
# exports, deletions, configuration changes, denied access.
AU1_CATEGORIES = (
    "LOGIN",
    "LOGIN_FAILED",
    "LOCKOUT",
    "ROLE_CHANGE",
    "ASSET_UPLOAD",
    "ASSET_DOWNLOAD",
    "INFERENCE",
    "AUDIT_EXPORT",
    "ASSET_DELETE",
    "ADMIN_CHANGE",
    "ACCESS_DENIED",
)


@control("AU-1", _("Audit on by default, covering users and security events"))
def check_au1() -> list[Evidence]:
    from compliance.events import EventType
    from compliance.models import AuditEntry

    since = timezone.now() - timedelta(days=AUDIT_WINDOW_DAYS)
    recent = dict(
        AuditEntry.objects.filter(timestamp__gte=since)
        .values_list("event_type")
        .annotate(n=Count("sequence"))
        .values_list("event_type", "n")
    )
    evidence = [
        line(
            bool(recent),
            _("{count} entries in the last {days} days, of {kinds} event types"),
            count=sum(recent.values()),
            days=AUDIT_WINDOW_DAYS,
            kinds=len(recent),
        )
    ]
    unseen = [name for name in AU1_CATEGORIES if EventType[name].value not in recent]
    if unseen:
        evidence.append(
            manual(
                _(
                    "not seen in the last {days} days: {types}; perform one of each and find its entry in the "
                    "auditor console"
                ),
                days=AUDIT_WINDOW_DAYS,
                types=listing(EventType[name].value for name in unseen),
            )
        )
    else:
        evidence.append(
            line(
                not unseen,
                _("every required kind of event was recorded in the last {days} days"),
                days=AUDIT_WINDOW_DAYS,
            )
        )
    return evidence


@control("AU-2", _("Records hold time, user, event, outcome, address, department, object, request id"))
def check_au2() -> list[Evidence]:
    from compliance.models import AuditEntry

    evidence = []
    sample = list(
        # Every field AU-2 names is read: a missing column fails the check.
        AuditEntry.objects.order_by("-sequence").values(
            "timestamp",
            "actor_type",
            "actor_name",
            "event_type",
            "outcome",
            "source_ip",
            "department_id",
            "object_id",
            "request_id",
        )[:AUDIT_SAMPLE]
    )
    if not sample:
        evidence.append(not_applicable(_("no audit entry yet")))
        return evidence
    requests = [e for e in sample if e["source_ip"]]
    without_request_id = sum(1 for e in requests if not e["request_id"])
    users_unnamed = sum(1 for e in sample if e["actor_type"] == "user" and not e["actor_name"])
    evidence.append(
        line(
            not without_request_id and not users_unnamed,
            _(
                "newest {count} entries: {requests} from requests, {missing} of them without a request id; "
                "{unnamed} user entries without a user name"
            ),
            count=len(sample),
            requests=len(requests),
            missing=without_request_id,
            unnamed=users_unnamed,
        )
    )
    return evidence


def _audit_triggers() -> list[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'compliance_auditentry'::regclass "
                "AND NOT tgisinternal AND tgenabled <> 'D' ORDER BY tgname"
            )
        else:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' "
                "AND tbl_name = 'compliance_auditentry' ORDER BY name"
            )
        return [row[0] for row in cursor.fetchall()]


@control("AU-3", _("Records protected against change; tamper-evident chain; signed checkpoints"))
def check_au3() -> list[Evidence]:
    from compliance.events import EventType
    from compliance.models import AuditArchive, AuditEntry

    triggers = _audit_triggers()
    result = chain()
    latest = result.latest_checkpoint
    evidence = [
        line(bool(triggers), _("database triggers on the audit table: {triggers}"), triggers=listing(triggers) or NONE),
        not_applicable(_("no audit entry chained yet"))
        if result.ok and result.last_sequence is None
        else line(
            result.ok,
            _("audit chain verified: entries {first}..{last}") if result.ok else _("audit chain broken: {message}"),
            **(
                {"first": result.first_sequence, "last": result.last_sequence}
                if result.ok
                else {"message": result.message}
            ),
        ),
        line(
            not result.backdated_count,
            _("back-dated entries (manage.py audit_verify lists them): {count}"),
            count=result.backdated_count,
        ),
        line(
            latest is not None,
            _("latest signed checkpoint: #{sequence} at {time}") if latest else _("no signed checkpoint yet"),
            **({"sequence": latest.sequence, "time": latest.time} if latest else {}),
        ),
    ]
    archive = AuditArchive.objects.order_by("-created_at").values_list("created_at", flat=True).first()
    backup = (
        AuditEntry.objects.filter(event_type=EventType.BACKUP, outcome="success")
        .order_by("-sequence")
        .values_list("timestamp", flat=True)
        .first()
    )
    newest = max((t for t in (archive, backup) if t is not None), default=None)
    evidence.append(
        line(
            newest is not None and timezone.now() - newest <= AUDIT_ARCHIVE_MAX_AGE,
            _("latest export or backup of the trail: {time}"),
            time=newest.isoformat() if newest else Term(_("never")),
        )
    )
    return evidence


@control("AU-4", _("Audit cannot be switched off; a failed audit write fails the action"))
def check_au4() -> list[Evidence]:
    from accounts import permissions
    from compliance.report_probes import audit_failure_probe

    probe = audit_failure_probe()
    evidence = []
    if probe.unexpected:
        evidence.append(
            line(
                False,
                _("probe on {vendor}: {problem}; a failed audit write could not be provoked (PostgreSQL is required)"),
                vendor=probe.vendor,
                problem=probe.unexpected,
            )
        )
    else:
        evidence.append(
            line(
                probe.action_written and bool(probe.refused) and not probe.action_left,
                _(
                    "probe: a department created through its service (row written: {written}) with an audit entry the "
                    "database refused ({refused}); the department is left after the failure: {left}"
                ),
                written=probe.action_written,
                refused=probe.refused,
                left=probe.action_left,
            )
        )
    switches = sorted(
        name
        for name in dir(settings)
        if name.isupper() and "AUDIT" in name and any(word in name for word in ("ENABLE", "DISABLE", "OFF", "SKIP"))
    )
    evidence.append(
        line(not switches, _("settings that could switch auditing off: {names}"), names=listing(switches) or NONE)
    )
    writable = sorted(
        f"{model}.{op}"
        for model in permissions.AUDIT_TRAIL_MODELS
        for op in permissions.CONSOLE.get(model, {})
        if op != "view"
    )
    evidence.append(
        line(not writable, _("console operations that change the audit trail: {ops}"), ops=listing(writable) or NONE)
    )
    return evidence


@control("AU-5", _("Records kept at least six months; can be shipped to a SIEM"))
def check_au5() -> list[Evidence]:
    from compliance.forwarding import ACKNOWLEDGED_TRANSPORTS, transport_of
    from compliance.models import AuditEntry, AuditForwardState

    oldest = AuditEntry.objects.order_by("sequence").values_list("timestamp", flat=True).first()
    evidence = [
        line(
            settings.AUDIT_RETENTION_DAYS >= settings.AUDIT_RETENTION_FLOOR_DAYS,
            _("retention {days} days (floor {floor}); oldest entry kept: {oldest}"),
            days=settings.AUDIT_RETENTION_DAYS,
            floor=settings.AUDIT_RETENTION_FLOOR_DAYS,
            oldest=oldest.isoformat() if oldest else NONE,
        )
    ]
    address = settings.AUDIT_SYSLOG_ADDRESS
    if not address:
        evidence.append(line(False, _("no forwarding to a SIEM: AUDIT_SYSLOG_ADDRESS is empty")))
        return evidence
    transport = transport_of(address)
    if transport not in ACKNOWLEDGED_TRANSPORTS:
        evidence.append(
            manual(
                _(
                    "AUDIT_SYSLOG_ADDRESS={address} ({transport}) acknowledges nothing: check in the SIEM that entry "
                    "#{sequence} arrived"
                ),
                address=address,
                transport=transport,
                sequence=AuditEntry.objects.order_by("-sequence").values_list("sequence", flat=True).first() or 0,
            )
        )
        return evidence
    state = AuditForwardState.objects.filter(address=address).first()
    max_age = timedelta(hours=settings.AUDIT_FORWARD_MAX_AGE_HOURS)
    success = state.last_success_at if state else None
    failing = bool(state and state.last_failure_at and (success is None or state.last_failure_at > success))
    evidence.append(
        line(
            success is not None and timezone.now() - success <= max_age and not failing,
            _(
                "AUDIT_SYSLOG_ADDRESS={address} ({transport}): last entry accepted {time} (#{sequence}); "
                "last failure {failure}"
            ),
            address=address,
            transport=transport,
            time=success.isoformat() if success else Term(_("never")),
            sequence=state.last_success_sequence if state and state.last_success_sequence else "-",
            failure=f"{state.last_failure_at.isoformat()} {state.last_failure}"
            if state and state.last_failure_at
            else NONE,
        )
    )
    return evidence
