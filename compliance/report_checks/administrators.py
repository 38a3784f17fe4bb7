"""The compliance report's checks: 安全管理中心 the three administrators (SM-1..3)."""

from __future__ import annotations

from django.utils.translation import gettext_noop as _

from compliance.report import Evidence, control, line
from compliance.report_checks.live import (
    NONE,
    listing,
    users,
)


def _role_holders(role: str) -> list[str]:
    return list(users().filter(is_active=True, admin_role=role).values_list("username", flat=True))


def _role_actions(role: str) -> list[str]:
    from accounts import permissions

    return sorted(action.value for action, grant in permissions.POLICY.items() if role in grant.admin_roles)


@control("SM-1", _("System administrator"))
def check_sm1() -> list[Evidence]:
    holders = _role_holders("system")
    return [line(bool(holders), _("system administrators: {names}"), names=listing(holders) or NONE)]


@control("SM-2", _("Security administrator"))
def check_sm2() -> list[Evidence]:
    holders = _role_holders("security")
    return [line(bool(holders), _("security administrators: {names}"), names=listing(holders) or NONE)]


@control("SM-3", _("Audit administrator; no account holds two roles"))
def check_sm3() -> list[Evidence]:
    holders = _role_holders("audit")
    actions = _role_actions("audit")
    beyond = [a for a in actions if not a.startswith(("audit.", "compliance_report.", "console."))]
    return [
        line(bool(holders), _("audit administrators: {names}"), names=listing(holders) or NONE),
        line(
            not beyond,
            _("the permission table grants the audit administrator: {actions}; beyond audit review: {beyond}"),
            actions=listing(actions),
            beyond=listing(beyond) or NONE,
        ),
    ]
