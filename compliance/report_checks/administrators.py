"""The compliance report's checks: 安全管理中心 the three administrators (SM-1..3)."""

from __future__ import annotations

from django.utils.translation import gettext_noop as _

from accounts.roles import AdminRole
from compliance.report import Evidence, control, line, not_applicable
from compliance.report_checks.live import (
    NONE,
    listing,
    users,
)


def _role_holders(role: AdminRole) -> list[str]:
    from accounts.permissions import administrator_role_holders

    return list(administrator_role_holders(users().filter(is_active=True), role).values_list("username", flat=True))


def _role_actions(role: AdminRole) -> list[str]:
    from accounts.permissions import administrator_role_grants

    return sorted(action.value for action in administrator_role_grants(role))


@control("SM-1", _("System administrator"))
def check_sm1() -> list[Evidence]:
    holders = _role_holders(AdminRole.SYSTEM)
    return [line(bool(holders), _("system administrators: {names}"), names=listing(holders) or NONE)]


@control("SM-2", _("Security administrator"))
def check_sm2() -> list[Evidence]:
    from inference.registry.selectors import model_registry_state

    holders = _role_holders(AdminRole.SECURITY)
    evidence = [line(bool(holders), _("security administrators: {names}"), names=listing(holders) or NONE)]
    # The security administrator approves model versions; the services refuse to activate one
    # that is not approved, so an activation of an unapproved version is a finding.
    state = model_registry_state()
    if not state.versions:
        evidence.append(not_applicable(_("no model version registered yet")))
        return evidence
    active = state.active
    evidence.append(
        line(
            active is not None and active.approved_at is not None and not state.activations_of_unapproved,
            _(
                "model versions {versions}, approved {approved}; active: {active} (approved by {approver}); "
                "activations of unapproved versions: {unapproved}"
            ),
            versions=state.versions,
            approved=state.approved,
            active=active.name if active else NONE,
            approver=(active.approved_by_name or NONE) if active else NONE,
            unapproved=listing(state.activations_of_unapproved) or NONE,
        )
    )
    return evidence


@control("SM-3", _("Audit administrator; no account holds two roles"))
def check_sm3() -> list[Evidence]:
    holders = _role_holders(AdminRole.AUDIT)
    actions = _role_actions(AdminRole.AUDIT)
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
