"""The checks of the compliance report, one per control of shared/MLPS3.md.

Every line is computed from what the check looks at now: the database (rows and catalogue), the
settings the process runs with, the permission table, live probes (compliance/report_probes.py).
No line states a pass from a constant; what the platform cannot see is ``manual`` with what to
look at, and what would be vacuous is ``not applicable``. tests/compliance/test_report_honesty.py
runs the report in two opposite states and fails on any passing line that did not change.

Messages are English message ids (``_`` is gettext_noop: translated when the report is rendered).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_noop as _

from compliance.report import (
    Evidence,
    Term,
    control,
    line,
    manual,
    not_applicable,
)

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


def _once(name: str, probe):
    if name not in _cache:
        _cache[name] = probe()
    return _cache[name]


def _users():
    return get_user_model().objects


def _names(values) -> str:
    return ", ".join(str(v) for v in values)


# --- 身份鉴别 identification and authentication ------------------------------------------------
@control("IA-1", _("Unique identities; password complexity and expiry"))
def check_ia1() -> list[Evidence]:
    from accounts.login_policy import current_policy

    table = get_user_model()._meta.db_table
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    unique_in_database = any(c["unique"] and c["columns"] == ["username"] for c in constraints.values())
    clashes = list(
        _users()
        .annotate(folded=Lower("username"))
        .values("folded")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .values_list("folded", flat=True)
    )
    validators = settings.AUTH_PASSWORD_VALIDATORS
    min_length = next(
        (v.get("OPTIONS", {}).get("min_length", 8) for v in validators if v["NAME"].endswith("MinimumLengthValidator")),
        0,
    )
    classes = next(
        (
            v.get("OPTIONS", {}).get("min_classes", 0)
            for v in validators
            if v["NAME"].endswith("CharacterClassValidator")
        ),
        0,
    )
    max_age = current_policy().password_max_age_days
    return [
        line(
            unique_in_database,
            _("the database enforces unique user names on {table}: {unique}"),
            table=table,
            unique=unique_in_database,
        ),
        line(not clashes, _("user names differing only in case: {names}"), names=_names(clashes) or NONE),
        line(min_length >= 8, _("minimum password length {length}"), length=min_length),
        line(classes >= 3, _("at least {classes} character classes required"), classes=classes),
        line(0 < max_age <= 90, _("local passwords expire after {days} days (policy in force)"), days=max_age),
    ]


@control("IA-2", _("Login failure handling and idle timeout"))
def check_ia2() -> list[Evidence]:
    from accounts.login_policy import current_policy

    policy = current_policy()
    return [
        line(
            policy.login_max_failures <= 5,
            _("lock after {failures} consecutive failures (account and address)"),
            failures=policy.login_max_failures,
        ),
        line(policy.login_lockout_seconds >= 1800, _("locked for {seconds} s"), seconds=policy.login_lockout_seconds),
        line(
            policy.session_idle_seconds <= 1800,
            _("idle sessions end after {seconds} s"),
            seconds=policy.session_idle_seconds,
        ),
    ]


def _tls():
    from compliance.report_probes import tls_probe

    return _once("tls", tls_probe)


@control("IA-3", _("Credentials never cross the network in clear text"))
def check_ia3() -> list[Evidence]:
    from compliance.report_probes import HSTS_MIN_SECONDS, cookie_flags, hsts_max_age

    probe = _tls()
    evidence: list[Evidence] = []
    if probe.problem:
        evidence.append(line(False, probe.problem_template, **probe.problem_params))
    else:
        handshake = probe.handshakes["TLSv1.3"]
        evidence.append(
            line(
                bool(handshake.accepted),
                _("PUBLIC_URL {url}: TLS 1.3 {detail}"),
                url=probe.url,
                detail=handshake.detail,
            )
        )
        if probe.response_status is None:
            if handshake.accepted:
                evidence.append(
                    line(False, _("no HTTPS response from PUBLIC_URL: {problem}"), problem=probe.response_problem)
                )
        else:
            max_age = hsts_max_age(probe.hsts)
            evidence.append(
                line(
                    max_age is not None and max_age >= HSTS_MIN_SECONDS,
                    _("Strict-Transport-Security on the sign-in page: {value}"),
                    value=probe.hsts or NONE,
                )
            )
            if not probe.cookies:
                evidence.append(
                    manual(
                        _(
                            "the sign-in page (HTTP {status}) set no cookie: sign in over PUBLIC_URL and check that "
                            "the session cookie is Secure and HttpOnly"
                        ),
                        status=probe.response_status,
                    )
                )
            for cookie in probe.cookies:
                name, flags = cookie_flags(cookie)
                evidence.append(
                    line(
                        {"secure", "httponly"} <= flags,
                        _("cookie {name} set by the sign-in page: {flags}"),
                        name=name,
                        flags=_names(sorted(flags)) or NONE,
                    )
                )
    session_secure = bool(getattr(settings, "SESSION_COOKIE_SECURE", False))
    evidence.append(
        line(
            session_secure and settings.SESSION_COOKIE_HTTPONLY,
            _("session cookie {name}: Secure {secure}, HttpOnly {httponly}"),
            name=settings.SESSION_COOKIE_NAME,
            secure=session_secure,
            httponly=settings.SESSION_COOKIE_HTTPONLY,
        )
    )
    uri = getattr(settings, "AUTH_LDAP_SERVER_URI", "") or ""
    if not uri:
        evidence.append(not_applicable(_("directory login is off (LDAP_SERVER_URI is empty): no directory binds")))
    else:
        start_tls = bool(getattr(settings, "AUTH_LDAP_START_TLS", False))
        transport = "LDAPS" if uri.startswith("ldaps://") else ("StartTLS" if start_tls else "plain LDAP")
        evidence.append(
            line(
                transport != "plain LDAP", _("directory binds to {uri} over {transport}"), uri=uri, transport=transport
            )
        )
    return evidence


@control("IA-4", _("Two-factor authentication (password + TOTP) for administrators"))
def check_ia4() -> list[Evidence]:
    from django_otp.plugins.otp_totp.models import TOTPDevice

    admins = list(_users().filter(is_active=True).exclude(admin_role="").values_list("pk", "username"))
    enrolled = set(
        TOTPDevice.objects.filter(user_id__in=[pk for pk, _name in admins], confirmed=True).values_list(
            "user_id", flat=True
        )
    )
    missing = [name for pk, name in admins if pk not in enrolled]
    if not admins:
        return [line(False, _("no active administrator account"))]
    return [
        line(
            not missing,
            _("{count} active administrators; without a confirmed TOTP device: {names}"),
            count=len(admins),
            names=_names(missing) or NONE,
        ),
    ]


# --- 访问控制 access control ---------------------------------------------------------------------
@control("AC-1", _("Every user has an account and explicit permissions"))
def check_ac1() -> list[Evidence]:
    active = _users().filter(is_active=True).count()
    if not active:
        return [not_applicable(_("no active accounts yet"))]
    no_grant = list(
        _users().filter(is_active=True, admin_role="", memberships__isnull=True).values_list("username", flat=True)[:20]
    )
    return [
        line(
            not no_grant,
            _("{active} active accounts; without a department membership or an administrator role: {names}"),
            active=active,
            names=_names(no_grant) or NONE,
        )
    ]


@control("AC-2", _("No default account or password survives installation"))
def check_ac2() -> list[Evidence]:
    if not _users().exists():
        return [not_applicable(_("no accounts yet"))]
    defaults = list(
        _users().filter(is_active=True, username__in=DEFAULT_ACCOUNT_NAMES).values_list("username", flat=True)
    )
    demo = list(_users().filter(is_active=True, username__startswith="demo-").values_list("username", flat=True))
    return [
        line(not defaults, _("active accounts with a default name: {names}"), names=_names(defaults) or NONE),
        line(
            not (settings.IS_PRODUCTION and demo),
            _("demo accounts: {names} (profile {profile})"),
            names=_names(demo) or NONE,
            profile=settings.PROFILE,
        ),
    ]


@control("AC-3", _("Redundant and expired accounts are disabled"))
def check_ac3() -> list[Evidence]:
    from compliance.events import EventType
    from compliance.models import AuditEntry

    if not _users().exists():
        return [not_applicable(_("no accounts yet"))]

    cutoff = timezone.now() - timedelta(days=INACTIVE_ACCOUNT_DAYS)
    stale = list(_users().filter(is_active=True, last_login__lt=cutoff).values_list("username", flat=True)[:20])
    evidence = [
        line(
            not stale,
            _("active accounts unused for more than {days} days: {names}"),
            days=INACTIVE_ACCOUNT_DAYS,
            names=_names(stale) or NONE,
        )
    ]
    if not getattr(settings, "LDAP_ENABLED", False):
        evidence.append(not_applicable(_("directory login is off: no directory accounts to disable")))
    else:
        last = (
            AuditEntry.objects.filter(event_type=EventType.DIRECTORY_SYNC, outcome="success")
            .order_by("-sequence")
            .values_list("timestamp", flat=True)
            .first()
        )
        evidence.append(
            line(
                last is not None and timezone.now() - last <= DIRECTORY_SYNC_MAX_AGE,
                _("last directory synchronisation (ldap_sync disables accounts gone from the directory): {time}"),
                time=last.isoformat() if last else Term(_("never")),
            )
        )
    return evidence


@control("AC-4", _("Least privilege; separated administrator privileges"))
def check_ac4() -> list[Evidence]:
    from departments.selectors import administrators_holding_department_access
    from departments.triggers import triggers_missing

    superusers = list(_users().filter(is_active=True, is_superuser=True).values_list("username", flat=True))
    holding = administrators_holding_department_access()
    listed = "; ".join(f"{username}: {', '.join(held)}" for username, held in holding.items())
    missing = triggers_missing(connection)
    return [
        line(not superusers, _("active superusers: {names}"), names=_names(superusers) or NONE),
        line(not holding, _("administrator accounts holding department access: {listed}"), listed=listed or NONE),
        line(
            not missing,
            _("the database refuses department access to administrator accounts ({triggers})"),
            triggers=f"triggers missing: {_names(missing)}" if missing else Term(_("triggers in place")),
        ),
    ]


# The actions that configure access policy (AC-5): roles, memberships, mappings, labels,
# retention, login/session policy, chat policy, API keys administration, administrators' 2FA.
ACCESS_POLICY_ACTION_NAMES = (
    "ROLE_ASSIGN",
    "MEMBERSHIP_MANAGE",
    "GROUP_MAPPING_MANAGE",
    "LABEL_MANAGE",
    "RETENTION_MANAGE",
    "SECURITY_POLICY_MANAGE",
    "CHAT_POLICY_MANAGE",
    "API_KEY_ADMINISTER",
    "ADMIN_TWO_FACTOR_RESET",
)
POLICY_EVENT_NAMES = (
    "ROLE_CHANGE",
    "MEMBERSHIP_ADD",
    "MEMBERSHIP_CHANGE",
    "MEMBERSHIP_REMOVE",
    "GROUP_MAPPING_CHANGE",
    "RETENTION_POLICY_CHANGE",
    "SECURITY_SETTING_CHANGE",
)


@control("AC-5", _("Access policy configured only by the security administrator"))
def check_ac5() -> list[Evidence]:
    from accounts import permissions
    from accounts.roles import AdminRole
    from compliance.events import EventType
    from compliance.models import AuditEntry

    actions = [permissions.Action[name] for name in ACCESS_POLICY_ACTION_NAMES]
    deviating = []
    for action in actions:
        grant = permissions.POLICY[action]
        others = grant.public or grant.signed_in or grant.department_roles or grant.owner_roles or grant.api_scope
        if grant.admin_roles != frozenset({AdminRole.SECURITY}) or others or grant.non_administrators:
            deviating.append(f"{action.value} → {'/'.join(sorted(grant.admin_roles)) or '?'}")
    console = sorted(
        model
        for model, operations in permissions.CONSOLE.items()
        if any(action in actions for op, action in operations.items() if op != "view")
    )
    evidence = [
        line(
            not deviating,
            _(
                "the permission table grants the {count} access-policy actions to the security administrator alone; "
                "granted otherwise: {deviating}"
            ),
            count=len(actions),
            deviating=_names(deviating) or NONE,
        ),
        line(
            bool(console), _("console models changed through those actions: {models}"), models=_names(console) or NONE
        ),
    ]
    events = [EventType[name] for name in POLICY_EVENT_NAMES]
    changes = AuditEntry.objects.filter(event_type__in=events, outcome="success")
    by_user = dict(
        changes.filter(actor_type="user")
        .values_list("actor_id")
        .annotate(n=Count("sequence"))
        .values_list("actor_id", "n")
    )
    if not by_user:
        evidence.append(not_applicable(_("no access-policy change by a person in the audit trail yet")))
    else:
        roles = dict(
            _users().filter(pk__in=[int(pk) for pk in by_user if pk.isdigit()]).values_list("pk", "admin_role")
        )
        wrong = sorted(
            f"{pk} ({roles.get(int(pk)) or '-'})"
            for pk in by_user
            if not pk.isdigit() or roles.get(int(pk)) != AdminRole.SECURITY
        )
        evidence.append(
            line(
                not wrong,
                _(
                    "{count} access-policy changes in the audit trail by {people} people; by accounts not holding the "
                    "security administrator role now: {wrong}"
                ),
                count=sum(by_user.values()),
                people=len(by_user),
                wrong=_names(wrong) or NONE,
            )
        )
    by_system = changes.filter(actor_type="system").count()
    if by_system:
        evidence.append(
            manual(
                _(
                    "{count} access-policy changes by the system actor (init_admins, directory synchronisation, "
                    "shell): "
                    "check the operations log for who ran them"
                ),
                count=by_system,
            )
        )
    return evidence


@control("AC-6", _("Granularity: user subjects; asset, conversation, model, department objects"))
def check_ac6() -> list[Evidence]:
    from django.apps import apps

    from departments.tenancy import DepartmentScopedManager

    scoped = sorted(m._meta.label for m in apps.get_models() if isinstance(m._default_manager, DepartmentScopedManager))
    wanted = {"assets.Asset", "inference.Conversation"}
    return [
        line(
            wanted <= set(scoped),
            _("department-scoped objects (a query outside a department scope is refused): {models}"),
            models=_names(scoped) or NONE,
        )
    ]


@control("AC-7", _("Security labels on important objects"))
def check_ac7() -> list[Evidence]:
    from django.apps import apps

    from departments.models import Classification, Department

    labelled = sorted(
        m._meta.label for m in apps.get_models() if any(f.name == "classification" for f in m._meta.fields)
    )
    evidence = [line(len(labelled) >= 2, _("classification labels on: {models}"), models=_names(labelled) or NONE)]
    counts = dict(
        Department.objects.values_list("classification").annotate(n=Count("pk")).values_list("classification", "n")
    )
    if not counts:
        evidence.append(not_applicable(_("no departments yet: no labelled objects to look at")))
    else:
        unknown = sorted(level for level in counts if level not in Classification.values)
        evidence.append(
            line(
                not unknown,
                _("departments by classification level: {levels}; levels outside the scale: {unknown}"),
                levels=_names(f"{level}: {n}" for level, n in sorted(counts.items())),
                unknown=_names(unknown) or NONE,
            )
        )
    return evidence


# --- 安全审计 security audit ----------------------------------------------------------------------
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
                types=_names(EventType[name].value for name in unseen),
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


def _chain():
    from compliance.verification import audit_chain_verify

    return _once("chain", audit_chain_verify)


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
    result = _chain()
    latest = result.latest_checkpoint
    evidence = [
        line(bool(triggers), _("database triggers on the audit table: {triggers}"), triggers=_names(triggers) or NONE),
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
        line(not switches, _("settings that could switch auditing off: {names}"), names=_names(switches) or NONE)
    )
    writable = sorted(
        f"{model}.{op}"
        for model in permissions.AUDIT_TRAIL_MODELS
        for op in permissions.CONSOLE.get(model, {})
        if op != "view"
    )
    evidence.append(
        line(not writable, _("console operations that change the audit trail: {ops}"), ops=_names(writable) or NONE)
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


# --- 入侵防范 intrusion prevention ----------------------------------------------------------------
@control("IP-1", _("Administration only from configured networks"))
def check_ip1() -> list[Evidence]:
    from accounts.permissions import admin_network_allowed

    networks = settings.ADMIN_ALLOWED_NETWORKS
    # A /16 or wider (IPv4; /48 for IPv6) is a whole site's intranet, not an administration network.
    # Loopback is the host itself (the default until the operator names the administrators' subnet).
    broad = [n for n in networks if n.prefixlen < (16 if n.version == 4 else 48) and not n.is_loopback]
    evidence = [
        line(
            bool(networks) and not broad,
            _("admin networks: {networks}; too broad: {broad}"),
            networks=_names(networks) or NONE,
            broad=_names(broad) or NONE,
        )
    ]
    # Asked of the function every request asks: would a trusted proxy's address pass as an administrator's?
    proxies = settings.TRUSTED_PROXIES
    admitted = [
        f"{proxy} ({address})"
        for proxy in proxies
        for address in {proxy.network_address, proxy.broadcast_address}
        if admin_network_allowed(str(address))
        or any(network.overlaps(proxy) for network in networks if network.version == proxy.version)
    ]
    evidence.append(
        line(
            not admitted,
            _("trusted proxies: {proxies}; inside an admin network: {admitted}"),
            proxies=_names(proxies) or NONE,
            admitted=_names(sorted(set(admitted))) or NONE,
        )
    )
    outsider = "203.0.113.7"  # TEST-NET-3: outside every private administration network
    evidence.append(
        line(
            not admin_network_allowed(outsider) and "accounts.middleware.AdminNetworkMiddleware" in settings.MIDDLEWARE,
            _("administration from {address} refused: {refused}"),
            address=outsider,
            refused=not admin_network_allowed(outsider),
        )
    )
    return evidence


@control("IP-2", _("All input validated"))
def check_ip2() -> list[Evidence]:
    return [
        line(settings.MAX_UPLOAD_MB <= 1024, _("uploads up to {mb} MB"), mb=settings.MAX_UPLOAD_MB),
        line(bool(settings.MAX_IMAGE_PIXELS), _("pixel limit per image {pixels}"), pixels=settings.MAX_IMAGE_PIXELS),
        line(bool(settings.MAX_PDF_PAGES), _("PDF page limit {pages}"), pages=settings.MAX_PDF_PAGES),
        line(
            settings.API_MAX_BODY_MB <= 1024,
            _("REST bodies up to {mb} MB, refused unread above"),
            mb=settings.API_MAX_BODY_MB,
        ),
    ]


@control("IP-3", _("Known-vulnerable dependencies are found"))
def check_ip3() -> list[Evidence]:
    path = Path(settings.DEPENDENCY_AUDIT_RESULT)
    if not path.is_file():
        return [
            manual(
                _(
                    "no dependency audit result at DEPENDENCY_AUDIT_RESULT={path}: schedule "
                    "scripts/dependency_audit.py "
                    "against the site's internal advisory mirror, or show the assessor the organisation's own audit"
                ),
                path=str(path),
            )
        ]
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        checked = datetime.fromisoformat(result["checked_at"])
    except (OSError, ValueError, KeyError) as exc:
        return [line(False, _("DEPENDENCY_AUDIT_RESULT={path} is unreadable: {error}"), path=str(path), error=str(exc))]
    fresh = datetime.now(UTC) - checked <= DEPENDENCY_AUDIT_MAX_AGE
    evidence = [
        line(
            result.get("status") == "clean",
            _(
                "dependency audit {status}: {packages} packages, {findings} findings, {accepted} accepted, "
                "{unverified} unverified"
            ),
            status=result.get("status", "?"),
            packages=result.get("packages", "?"),
            findings=len(result.get("findings", [])),
            accepted=len(result.get("accepted", [])),
            unverified=len(result.get("unverified", [])),
        ),
        line(
            fresh,
            _("checked at {time} (at most {days} days old)"),
            time=result["checked_at"],
            days=DEPENDENCY_AUDIT_MAX_AGE.days,
        ),
    ]
    source = result.get("vulnerability_service") or result.get("index_url")
    if not source:
        evidence.append(
            manual(
                _(
                    "the result does not say which advisory database it used: show the assessor the scheduled run "
                    "against the internal mirror"
                )
            )
        )
    return evidence


# --- 数据完整性 / 保密性 integrity and confidentiality ------------------------------------------------
BLOB_SAMPLE = 20


@control("DI-1", _("Integrity by cryptography: TLS, SHA-256 of files, authenticated encryption, audit chain"))
def check_di1() -> list[Evidence]:
    from assets.chunk_format import HEADER_SIZE, MAGIC
    from assets.models import Asset
    from assets.storage import blob_path

    evidence = []
    total = Asset._base_manager.count()
    if not total:
        evidence.append(not_applicable(_("no stored files yet")))
    else:
        missing_hash = Asset._base_manager.filter(sha256="").count()
        names = list(
            Asset._base_manager.order_by("-pk").values_list("storage_name", flat=True).distinct()[:BLOB_SAMPLE]
        )
        not_sealed = []
        for name in names:
            try:
                with blob_path(name).open("rb") as handle:
                    if handle.read(HEADER_SIZE)[: len(MAGIC)] != MAGIC:
                        not_sealed.append(name)
            except OSError:
                not_sealed.append(name)
        evidence.append(
            line(
                not missing_hash,
                _("{total} stored files, {missing} without SHA-256"),
                total=total,
                missing=missing_hash,
            )
        )
        evidence.append(
            line(
                not not_sealed,
                _(
                    "{count} sampled blobs in the authenticated AES-256-GCM chunk format; "
                    "not in it or unreadable: {names}"
                ),
                count=len(names),
                names=_names(not_sealed) or NONE,
            )
        )
    result = _chain()
    evidence.append(
        line(result.ok, _("audit entries hash-chained and verified up to #{last}"), last=result.last_sequence or 0)
    )
    probe = _tls()
    evidence.append(
        line(
            bool(probe.accepted("TLSv1.3")),
            _("in transit: TLS 1.3 with a verified certificate at PUBLIC_URL: {answer}"),
            answer=probe.problem or probe.handshakes["TLSv1.3"].detail,
        )
    )
    return evidence


@control("DC-1", _("Confidentiality in transit (TLS 1.2+, 1.3 preferred)"))
def check_dc1() -> list[Evidence]:
    probe = _tls()
    if probe.problem:
        return [line(False, probe.problem_template, **probe.problem_params)]
    evidence = []
    tls13 = probe.handshakes["TLSv1.3"]
    evidence.append(line(bool(tls13.accepted), _("TLS 1.3 at {url}: {detail}"), url=probe.url, detail=tls13.detail))
    tls12 = probe.handshakes["TLSv1.2"]
    evidence.append(
        line(
            tls12.accepted is not None,
            _("TLS 1.2 (allowed, 1.3 preferred) accepted: {accepted} ({detail})"),
            accepted=tls12.accepted,
            detail=tls12.detail,
        )
    )
    for version in ("TLSv1.1", "TLSv1"):
        handshake = probe.handshakes[version]
        if handshake.accepted is None:
            evidence.append(
                manual(
                    _(
                        "{version}: {detail}; check from another host that the server refuses it "
                        "(openssl s_client -connect HOST:PORT -{flag})"
                    ),
                    version=version,
                    detail=handshake.detail,
                    flag="tls1_1" if version == "TLSv1.1" else "tls1",
                )
            )
        else:
            evidence.append(
                line(not handshake.accepted, _("{version} refused: {detail}"), version=version, detail=handshake.detail)
            )
    return evidence


@control("DC-2", _("Confidentiality at rest: password hashes, encrypted files and secrets"))
def check_dc2() -> list[Evidence]:
    from django.contrib.auth.hashers import identify_hasher

    hasher = settings.PASSWORD_HASHERS[0].rsplit(".", 1)[-1]
    strong = {"Argon2PasswordHasher", "PBKDF2PasswordHasher", "ScryptPasswordHasher", "BCryptSHA256PasswordHasher"}
    weak_stored: dict[str, int] = {}
    for encoded in _users().exclude(password="").values_list("password", flat=True).iterator():
        if encoded.startswith("!"):
            continue  # unusable password (directory accounts)
        try:
            name = type(identify_hasher(encoded)).__name__
        except ValueError:
            name = "unknown"
        if name not in strong:
            weak_stored[name] = weak_stored.get(name, 0) + 1
    key_file = Path(settings.ASSET_MASTER_KEY_FILE)
    mode = key_file.stat().st_mode & 0o777 if key_file.is_file() else None
    return [
        line(hasher in strong, _("password hasher for new passwords: {hasher}"), hasher=hasher),
        line(
            not weak_stored,
            _("stored passwords under a weak or unknown hasher: {counts}"),
            counts=_names(f"{name}: {n}" for name, n in sorted(weak_stored.items())) or NONE,
        ),
        line(
            mode is not None and not mode & 0o077,
            _("asset master key ring {path}: {found}"),
            path=str(key_file),
            found=(f"mode {oct(mode)}" if mode is not None else Term(_("missing"))),
        ),
    ]


# --- 数据备份恢复 backup and recovery ------------------------------------------------------------
def _last_backup():
    from compliance.events import EventType
    from compliance.models import AuditEntry

    return (
        AuditEntry.objects.filter(event_type=EventType.BACKUP, outcome="success")
        .order_by("-sequence")
        .values("timestamp", "object_repr")
        .first()
    )


def _replicas():
    from compliance.report_probes import replicas

    return _once("replicas", replicas)


@control("BR-1", _("Local backup and a tested restore"))
def check_br1() -> list[Evidence]:
    from compliance.backup import BackupError, backup_verify
    from compliance.events import EventType
    from compliance.models import AuditEntry

    last = _last_backup()
    evidence = [
        line(
            last is not None and timezone.now() - last["timestamp"] <= BACKUP_MAX_AGE,
            _("last backup: {time} (at most {days} days old)"),
            time=last["timestamp"].isoformat() if last else Term(_("never")),
            days=BACKUP_MAX_AGE.days,
        )
    ]
    if last:
        path = Path(last["object_repr"])
        if not path.exists():
            evidence.append(
                manual(
                    _(
                        "backup {path} is not reachable from this host: check its checksums there (backup_restore "
                        "verifies them before restoring)"
                    ),
                    path=str(path),
                )
            )
        else:
            try:
                manifest = backup_verify(path)
                files = len(manifest.get("files", {}))
                evidence.append(
                    line(
                        files > 0,
                        _("backup {path}: every checksum verified ({files} files)"),
                        path=str(path),
                        files=files,
                    )
                )
            except BackupError as exc:
                evidence.append(line(False, _("backup {path}: {error}"), path=str(path), error=str(exc)))
    restore = (
        AuditEntry.objects.filter(event_type=EventType.RESTORE, outcome="success")
        .order_by("-sequence")
        .values_list("timestamp", flat=True)
        .first()
    )
    evidence.append(
        line(
            restore is not None,
            _("last restore performed and recorded: {time}"),
            time=restore.isoformat() if restore else Term(_("never")),
        )
    )
    return evidence


@control("BR-2", _("Off-site backup"))
def check_br2() -> list[Evidence]:
    standbys = _replicas()
    if standbys is None:
        evidence = [
            line(
                False,
                _("the database is {vendor}: no replica possible (PostgreSQL is required)"),
                vendor=connection.vendor,
            )
        ]
    elif standbys and all(r.state is None for r in standbys):
        evidence = [
            manual(
                _(
                    "pg_stat_replication lists {count} connections but no state is visible to this database user "
                    "(grant it pg_monitor): check the replica on the standby"
                ),
                count=len(standbys),
            )
        ]
    else:
        streaming = [r for r in standbys if r.state == "streaming"]
        evidence = [
            line(
                bool(streaming),
                _("streaming replicas of the database (pg_stat_replication): {replicas}"),
                replicas=_names(
                    f"{r.name} at {r.address} ({r.sync_state}, replay lag {r.replay_lag or 0})" for r in streaming
                )
                or NONE,
            )
        ]
        if streaming:
            return evidence
    last = _last_backup()
    if last:
        evidence.append(
            manual(
                _(
                    "latest backup {path} ({time}): check that a copy is kept at another site; "
                    "a path alone does not say so"
                ),
                path=last["object_repr"],
                time=last["timestamp"].isoformat(),
            )
        )
    return evidence


@control("BR-3", _("Redundancy of the processing system"))
def check_br3() -> list[Evidence]:
    from compliance.report_heartbeat import channel_layer_backend, heartbeat_window, heartbeats_recent

    evidence = []
    backend = channel_layer_backend()
    evidence.append(_channel_layer_line(backend))
    beats = list(heartbeats_recent())
    hosts = sorted({beat.hostname for beat in beats})
    minutes = int(heartbeat_window().total_seconds() // 60) or 1
    evidence.append(
        line(
            len(beats) >= 2 and len(beats) >= settings.APP_PROCESSES,
            _(
                "app processes that reported a heartbeat in the last {minutes} min: {count} "
                "(APP_PROCESSES={declared}): {processes}"
            ),
            minutes=minutes,
            count=len(beats),
            declared=settings.APP_PROCESSES,
            processes=_names(f"{b.hostname}:{b.pid}" for b in beats) or NONE,
        )
    )
    if len(hosts) == 1 and len(beats) >= 2:
        evidence.append(
            manual(
                _("every live app process runs on {host}: check that a second node takes over when it fails"),
                host=hosts[0],
            )
        )
    elif len(hosts) >= 2:
        evidence.append(
            line(len(hosts) >= 2, _("app processes on {count} hosts: {hosts}"), count=len(hosts), hosts=_names(hosts))
        )
    standbys = _replicas()
    streaming = [r for r in standbys or [] if r.state == "streaming"]
    evidence.append(
        line(
            bool(streaming),
            _("database replicas streaming: {replicas}"),
            replicas=_names(f"{r.name} at {r.address}" for r in streaming) or NONE,
        )
    )
    return evidence


def _channel_layer_line(backend: str) -> Evidence:
    if backend != "RedisChannelLayer":
        return line(False, _("channel layer {backend}: one process only (set REDIS_URL)"), backend=backend)
    try:
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        channel = async_to_sync(layer.new_channel)("compliance-report.")
        async_to_sync(layer.send)(channel, {"type": "compliance.probe"})
        received = async_to_sync(layer.receive)(channel)
        ok = received.get("type") == "compliance.probe"
        return line(
            ok, _("channel layer {backend}: a message sent through Redis came back: {ok}"), backend=backend, ok=ok
        )
    except Exception as exc:  # Redis away: the layer that spans processes is not working
        return line(False, _("channel layer {backend}: Redis did not answer: {error}"), backend=backend, error=str(exc))


# --- 剩余信息保护 residual information ------------------------------------------------------------
@control("RI-1", _("Authentication data cleared when released"))
def check_ri1() -> list[Evidence]:
    from django.contrib.sessions.models import Session

    now = timezone.now()
    if not Session.objects.exists():
        return [not_applicable(_("no sessions yet"))]
    expired = Session.objects.filter(expire_date__lt=now).count()
    live = list(Session.objects.filter(expire_date__gte=now).order_by("-expire_date")[:SESSION_SAMPLE])
    evidence = [line(expired < 1000, _("expired sessions awaiting clearsessions: {count}"), count=expired)]
    if not live:
        evidence.append(not_applicable(_("no live sessions to look at")))
        return evidence
    user_ids = {}
    for session in live:
        user_id = session.get_decoded().get("_auth_user_id")
        if user_id is not None:
            user_ids[session.pk] = str(user_id)
    active = {
        str(pk) for pk in _users().filter(is_active=True, pk__in=list(user_ids.values())).values_list("pk", flat=True)
    }
    leftover = sorted({uid for uid in user_ids.values() if uid not in active})
    evidence.append(
        line(
            not leftover,
            _("{count} live sessions sampled; sessions of disabled or deleted accounts: {users}"),
            count=len(live),
            users=_names(leftover) or NONE,
        )
    )
    return evidence


@control("RI-2", _("Deleted or expired documents and conversations leave nothing readable"))
def check_ri2() -> list[Evidence]:
    from compliance.preview_crypto import audit_plaintext_previews_count
    from compliance.report_probes import BLOB_GRACE_SECONDS, residual_sample
    from compliance.retention import registered_purgers

    purgers = [p.name for p in registered_purgers()]
    sample = residual_sample()
    evidence = []
    if {"assets.files", "inference.conversations"} - set(purgers):
        evidence.append(line(False, _("retention purgers registered: {purgers}"), purgers=_names(purgers) or NONE))
    # Entries written before previews were sealed keep them readable (the trail is immutable):
    # a residue until they are purged after export, whatever else was deleted.
    legacy = audit_plaintext_previews_count()
    if legacy["total"] or sample.assets or sample.conversations:
        evidence.append(
            line(
                not legacy["total"],
                _(
                    "audit entries still holding a readable preview (written before previews were sealed): {total} "
                    "({prompts} prompt previews, {names} file names)"
                ),
                total=legacy["total"],
                prompts=legacy["prompt_previews"],
                names=legacy["file_names"],
            )
        )
    if not (sample.assets or sample.conversations):
        evidence.append(not_applicable(_("no file or conversation deleted or expired yet: no residue to look for")))
    else:
        evidence.append(
            line(
                not (sample.asset_rows or sample.extraction_rows),
                _("{count} deleted files sampled: rows left {rows}; extraction results left {extractions}"),
                count=sample.assets,
                rows=_names(sample.asset_rows) or NONE,
                extractions=_names(sample.extraction_rows) or NONE,
            )
        )
        evidence.append(
            line(
                not (sample.conversation_rows or sample.message_rows),
                _("{count} deleted conversations sampled: rows left {rows}; messages left {messages}"),
                count=sample.conversations,
                rows=_names(sample.conversation_rows) or NONE,
                messages=sample.message_rows,
            )
        )
    if not sample.blobs_on_disk:
        evidence.append(not_applicable(_("no encrypted blob stored yet")))
        return evidence
    evidence.append(
        line(
            not sample.orphan_blobs,
            _("encrypted blobs no file refers to, older than {seconds} s: {blobs}"),
            seconds=BLOB_GRACE_SECONDS,
            blobs=_names(sample.orphan_blobs[:20]) or NONE,
        )
    )
    return evidence


# --- 个人信息保护 personal information -------------------------------------------------------------
@control("PI-1", _("Only the personal data the business needs"))
def check_pi1() -> list[Evidence]:
    if not getattr(settings, "LDAP_ENABLED", False):
        return [not_applicable(_("directory login is off: no directory attributes are copied"))]
    attributes = sorted(getattr(settings, "AUTH_LDAP_USER_ATTR_MAP", {}) or {})
    allowed = {"first_name", "last_name", "email", "employee_number"}
    return [
        line(
            set(attributes) <= allowed,
            _("directory attributes kept: {attributes}; beyond the business need: {extra}"),
            attributes=_names(attributes) or NONE,
            extra=_names(sorted(set(attributes) - allowed)) or NONE,
        )
    ]


@control("PI-2", _("No unauthorised access to personal data"))
def check_pi2() -> list[Evidence]:
    from assets.models import Asset
    from compliance.masking import mask_identifiers
    from departments.tenancy import ScopeError

    sample = mask_identifiers("110101199003077777 13800138000")
    try:
        Asset.objects.count()
        refused = False
    except ScopeError:
        refused = True
    return [
        line(
            "199003" not in sample and "0013800" not in sample,
            _("identifiers masked in previews: {sample}"),
            sample=sample,
        ),
        line(refused, _("a query of files outside a department scope is refused: {refused}"), refused=refused),
    ]


# --- 安全管理中心 the three administrators ---------------------------------------------------------
def _role_holders(role: str) -> list[str]:
    return list(_users().filter(is_active=True, admin_role=role).values_list("username", flat=True))


def _role_actions(role: str) -> list[str]:
    from accounts import permissions

    return sorted(action.value for action, grant in permissions.POLICY.items() if role in grant.admin_roles)


@control("SM-1", _("System administrator"))
def check_sm1() -> list[Evidence]:
    holders = _role_holders("system")
    return [line(bool(holders), _("system administrators: {names}"), names=_names(holders) or NONE)]


@control("SM-2", _("Security administrator"))
def check_sm2() -> list[Evidence]:
    holders = _role_holders("security")
    return [line(bool(holders), _("security administrators: {names}"), names=_names(holders) or NONE)]


@control("SM-3", _("Audit administrator; no account holds two roles"))
def check_sm3() -> list[Evidence]:
    holders = _role_holders("audit")
    actions = _role_actions("audit")
    beyond = [a for a in actions if not a.startswith(("audit.", "compliance_report.", "console."))]
    return [
        line(bool(holders), _("audit administrators: {names}"), names=_names(holders) or NONE),
        line(
            not beyond,
            _("the permission table grants the audit administrator: {actions}; beyond audit review: {beyond}"),
            actions=_names(actions),
            beyond=_names(beyond) or NONE,
        ),
    ]
