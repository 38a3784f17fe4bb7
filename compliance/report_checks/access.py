"""The compliance report's checks: 访问控制 access control (AC-1..7)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext_noop as _

from compliance.report import Evidence, Term, control, line, manual, not_applicable
from compliance.report_checks.live import (
    DEFAULT_ACCOUNT_NAMES,
    DIRECTORY_SYNC_MAX_AGE,
    INACTIVE_ACCOUNT_DAYS,
    NONE,
    listing,
    users,
)


@control("AC-1", _("Every user has an account and explicit permissions"))
def check_ac1() -> list[Evidence]:
    active = users().filter(is_active=True).count()
    if not active:
        return [not_applicable(_("no active accounts yet"))]
    from accounts.permissions import non_administrators_filter

    no_grant = list(
        non_administrators_filter(users().filter(is_active=True, memberships__isnull=True)).values_list(
            "username", flat=True
        )[:20]
    )
    return [
        line(
            not no_grant,
            _("{active} active accounts; without a department membership or an administrator role: {names}"),
            active=active,
            names=listing(no_grant) or NONE,
        )
    ]


@control("AC-2", _("No default account or password survives installation"))
def check_ac2() -> list[Evidence]:
    if not users().exists():
        return [not_applicable(_("no accounts yet"))]
    defaults = list(
        users().filter(is_active=True, username__in=DEFAULT_ACCOUNT_NAMES).values_list("username", flat=True)
    )
    demo = list(users().filter(is_active=True, username__startswith="demo-").values_list("username", flat=True))
    return [
        line(not defaults, _("active accounts with a default name: {names}"), names=listing(defaults) or NONE),
        line(
            not (settings.IS_PRODUCTION and demo),
            _("demo accounts: {names} (profile {profile})"),
            names=listing(demo) or NONE,
            profile=settings.PROFILE,
        ),
    ]


@control("AC-3", _("Redundant and expired accounts are disabled"))
def check_ac3() -> list[Evidence]:
    from compliance.events import EventType
    from compliance.models import AuditEntry

    if not users().exists():
        return [not_applicable(_("no accounts yet"))]

    cutoff = timezone.now() - timedelta(days=INACTIVE_ACCOUNT_DAYS)
    stale = list(users().filter(is_active=True, last_login__lt=cutoff).values_list("username", flat=True)[:20])
    evidence = [
        line(
            not stale,
            _("active accounts unused for more than {days} days: {names}"),
            days=INACTIVE_ACCOUNT_DAYS,
            names=listing(stale) or NONE,
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

    superusers = list(users().filter(is_active=True, is_superuser=True).values_list("username", flat=True))
    holding = administrators_holding_department_access()
    listed = "; ".join(f"{username}: {', '.join(held)}" for username, held in holding.items())
    missing = triggers_missing(connection)
    return [
        line(not superusers, _("active superusers: {names}"), names=listing(superusers) or NONE),
        line(not holding, _("administrator accounts holding department access: {listed}"), listed=listed or NONE),
        line(
            not missing,
            _("the database refuses department access to administrator accounts ({triggers})"),
            triggers=f"triggers missing: {listing(missing)}" if missing else Term(_("triggers in place")),
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
        if not permissions.administrator_role_alone_granted(action, AdminRole.SECURITY):
            granted = permissions.POLICY[action].admin_roles
            deviating.append(f"{action.value} → {'/'.join(sorted(granted)) or '?'}")
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
            deviating=listing(deviating) or NONE,
        ),
        line(
            bool(console), _("console models changed through those actions: {models}"), models=listing(console) or NONE
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
        actors = users().filter(pk__in=[int(pk) for pk in by_user if pk.isdigit()])
        roles = dict(actors.values_list("pk", "admin_role"))
        security = set(permissions.administrator_role_holders(actors, AdminRole.SECURITY).values_list("pk", flat=True))
        wrong = sorted(
            f"{pk} ({roles.get(int(pk)) or '-'})" for pk in by_user if not pk.isdigit() or int(pk) not in security
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
                wrong=listing(wrong) or NONE,
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
            models=listing(scoped) or NONE,
        )
    ]


@control("AC-7", _("Security labels on important objects"))
def check_ac7() -> list[Evidence]:
    from django.apps import apps

    from departments.models import Classification, Department

    labelled = sorted(
        m._meta.label for m in apps.get_models() if any(f.name == "classification" for f in m._meta.fields)
    )
    evidence = [line(len(labelled) >= 2, _("classification labels on: {models}"), models=listing(labelled) or NONE)]
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
                levels=listing(f"{level}: {n}" for level, n in sorted(counts.items())),
                unknown=listing(unknown) or NONE,
            )
        )
    return evidence
