"""Every role × every protected action → allowed / 404 / 403, on the permission layer and the portal.

The expectations are written out here by hand (not derived from accounts.permissions), so that
an accidental change of the layer's tables fails this test.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404

from accounts.permissions import Action, authorize, role_has_model_permission
from accounts.roles import AdminRole
from compliance.events import EventType, Outcome
from compliance.models import AuditEntry

pytestmark = pytest.mark.django_db

ROLES = ["system", "security", "audit", "department_admin", "member", "outsider"]
OK, NOT_FOUND, FORBIDDEN = "allowed", 404, 403

# Administration actions from an allowed network: only the owning role; everyone else 403.
ADMIN_EXPECTED = {
    Action.USER_MANAGE: {"system"},
    Action.DEPARTMENT_MANAGE: {"system"},
    Action.MEMBERSHIP_MANAGE: {"system"},
    Action.MODEL_SETTINGS: {"system"},
    Action.BACKUP_RUN: {"system"},
    Action.TWO_FACTOR_RESET: {"system"},
    Action.ROLE_ASSIGN: {"security"},
    Action.ADMIN_TWO_FACTOR_RESET: {"security"},
    Action.GROUP_MAPPING_MANAGE: {"security"},
    Action.LABEL_MANAGE: {"security"},
    Action.RETENTION_MANAGE: {"security"},
    Action.SECURITY_POLICY_MANAGE: {"security"},
    Action.API_KEY_ADMINISTER: {"security"},
    Action.LOCK_RELEASE: {"system", "security"},
    Action.AUDIT_VIEW: {"audit"},
    Action.AUDIT_EXPORT: {"audit"},
}
# Department actions on department A (finance): non-members 404, members lacking the role 403.
MEMBER_AND_ADMIN = {"department_admin": OK, "member": OK}
ADMIN_ONLY = {"department_admin": OK, "member": FORBIDDEN}
DEPARTMENT_EXPECTED = {
    Action.DEPARTMENT_ENTER: MEMBER_AND_ADMIN,
    Action.CHAT: MEMBER_AND_ADMIN,
    Action.ASSET_UPLOAD: MEMBER_AND_ADMIN,
    Action.ASSET_VIEW: MEMBER_AND_ADMIN,
    Action.ASSET_DELETE_OWN: MEMBER_AND_ADMIN,
    Action.ASSET_DELETE_ANY: ADMIN_ONLY,
    Action.CONVERSATION_VIEW_ANY: ADMIN_ONLY,
    Action.DEPARTMENT_MEMBERS_VIEW: ADMIN_ONLY,
    Action.DEPARTMENT_API_KEY_MANAGE: ADMIN_ONLY,
}


def test_every_action_has_an_expectation():
    assert set(ADMIN_EXPECTED) | set(DEPARTMENT_EXPECTED) == set(Action)


@pytest.fixture(autouse=True)
def administrators_subnet(settings):
    """The matrix is exercised from the administrators' own subnet, as configured in a deployment."""
    import ipaddress

    settings.ADMIN_ALLOWED_NETWORKS = [*settings.ADMIN_ALLOWED_NETWORKS, ipaddress.ip_network("10.1.2.0/24")]


@pytest.fixture
def people(personas, make_user):
    return {
        "system": make_user("sys", admin_role=AdminRole.SYSTEM),
        "security": make_user("sec", admin_role=AdminRole.SECURITY),
        "audit": make_user("aud", admin_role=AdminRole.AUDIT),
        "department_admin": personas.admin,
        "member": personas.member,
        "outsider": personas.outsider,
    }


def outcome(user, action, **kwargs):
    try:
        authorize(user, action, **kwargs)
    except Http404:
        return NOT_FOUND
    except PermissionDenied:
        return FORBIDDEN
    return OK


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(ADMIN_EXPECTED), ids=str)
def test_admin_action_matrix(people, role, action, system_context):
    expected = OK if role in ADMIN_EXPECTED[action] else FORBIDDEN
    before = AuditEntry.objects.count()
    assert outcome(people[role], action, source_ip="10.1.2.3") == expected
    if expected != OK:
        denial = AuditEntry.objects.order_by("-sequence").first()
        assert AuditEntry.objects.count() == before + 1
        assert (denial.event_type, denial.outcome, denial.details["action"]) == (
            EventType.ACCESS_DENIED,
            Outcome.DENIED,
            str(action),
        )
    # From outside the administration networks it does not exist, for every role.
    assert outcome(people[role], action, source_ip="203.0.113.9") == NOT_FOUND


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(DEPARTMENT_EXPECTED), ids=str)
def test_department_action_matrix(people, personas, role, action, system_context):
    expected = DEPARTMENT_EXPECTED[action].get(role, NOT_FOUND)
    assert outcome(people[role], action, department=personas.department_a) == expected


def test_inactive_department_or_user_is_404_for_members(people, personas, system_context):
    personas.department_a.is_active = False
    personas.department_a.save()
    assert outcome(people["member"], Action.CHAT, department=personas.department_a) == NOT_FOUND


CONSOLE_EXPECTED = {
    # model label: {role: operations}
    "accounts.user": {"system": "view add change"},
    "departments.department": {"system": "view add change"},
    "departments.membership": {"system": "view add change delete"},
    "accounts.administratorrole": {"security": "view change"},
    "accounts.departmentlabel": {"security": "view change"},
    "accounts.directorygroupmapping": {"security": "view add change delete"},
    "accounts.securitypolicy": {"security": "view add change"},
    "compliance.retentionpolicy": {"security": "view add change delete"},
    "accounts.loginthrottle": {"system": "view delete", "security": "view delete"},
    "assets.asset": {"system": "view", "security": "view change"},
    "compliance.auditentry": {"audit": "view"},
    "auth.group": {},
    "otp_totp.totpdevice": {},
    "otp_static.staticdevice": {},
}


@pytest.mark.parametrize("role", ["system", "security", "audit", ""])
@pytest.mark.parametrize("label", list(CONSOLE_EXPECTED))
def test_console_model_matrix(role, label):
    app_label, model = label.split(".")
    allowed = set(CONSOLE_EXPECTED[label].get(role, "").split())
    for operation in ("view", "add", "change", "delete"):
        assert role_has_model_permission(role, f"{app_label}.{operation}_{model}") == (operation in allowed), (
            role,
            label,
            operation,
        )


def test_audit_trail_cannot_be_made_writable():
    from accounts.permissions import model_permissions_register

    with pytest.raises(ValueError, match="read-only"):
        model_permissions_register("compliance.auditentry", {"audit": frozenset({"view", "delete"})})


def test_superuser_flag_grants_nothing(make_user):
    user = make_user("root", is_superuser=True)
    assert not user.has_perm("accounts.view_user")
    assert not user.has_module_perms("accounts")
