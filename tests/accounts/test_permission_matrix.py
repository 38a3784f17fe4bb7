"""Every role × every action of the policy table → allowed / 404 / 403 / 401, and the console.

The expectations are written out here by hand (not derived from accounts.permissions), so that
an accidental change of the table fails this test.
"""

from __future__ import annotations

import ipaddress

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import Http404

from accounts.permissions import (
    CONSOLE,
    POLICY,
    Action,
    SignInRequired,
    authorize,
    console_permission,
    decide,
    department_role_loses_grants,
    department_role_strongest,
    is_administrator,
)
from accounts.roles import AdminRole, MembershipRole
from compliance.events import EventType, Outcome
from compliance.models import AuditEntry
from departments.api_keys.services import api_key_create
from departments.tenancy import department_scope
from inference.models import ChatPolicy

pytestmark = pytest.mark.django_db

ROLES = ["system", "security", "audit", "department_admin", "member", "outsider"]
OK, NOT_FOUND, FORBIDDEN, SIGN_IN = "allowed", 404, 403, 401

PUBLIC = {
    Action.HEALTH,
    Action.SIGN_IN,
    Action.LANGUAGE,
    Action.API_SCHEMA,
    Action.STATIC,
    Action.ENTRY,
}
SIGNED_IN = {Action.OWN_ACCOUNT, Action.DEPARTMENT_PICK}
OPERATORS = {Action.METRICS}  # no account, but an operator's request

# Administration actions from an allowed network: only the owning roles; everyone else 403.
ADMIN_EXPECTED = {
    Action.CONSOLE_ENTER: {"system", "security", "audit"},
    Action.USER_MANAGE: {"system"},
    Action.DEPARTMENT_MANAGE: {"system"},
    Action.MEMBERSHIP_MANAGE: {"security"},  # department data access is a permission (SM-2)
    Action.ASSET_METADATA_VIEW: {"system", "security"},
    Action.MODEL_REGISTRY_VIEW: {"system", "security"},
    Action.MODEL_REGISTER: {"system"},
    Action.MODEL_ACTIVATE: {"system"},  # activation and rollback, of approved versions only
    Action.MODEL_APPROVE: {"security"},
    Action.TWO_FACTOR_RESET: {"system"},
    Action.ROLE_ASSIGN: {"security"},
    Action.ADMIN_TWO_FACTOR_RESET: {"security"},
    Action.GROUP_MAPPING_MANAGE: {"security"},
    Action.LABEL_MANAGE: {"security"},
    Action.RETENTION_MANAGE: {"security"},
    Action.SECURITY_POLICY_MANAGE: {"security"},
    Action.CHAT_POLICY_MANAGE: {"security"},
    Action.API_KEY_ADMINISTER: {"security"},
    Action.LOCK_RELEASE: {"system", "security"},
    Action.AUDIT_VIEW: {"audit"},
    Action.AUDIT_EXPORT: {"audit"},
    Action.COMPLIANCE_REPORT_VIEW: {"security", "audit"},
    Action.USAGE_VIEW_ALL: {"system"},  # counts only, never content
}
# Department actions on department A (finance): non-members 404, members lacking the role 403.
MEMBER_AND_ADMIN = {"department_admin": OK, "member": OK}
ADMIN_ONLY = {"department_admin": OK, "member": FORBIDDEN}
DEPARTMENT_EXPECTED = {
    Action.DEPARTMENT_ENTER: MEMBER_AND_ADMIN,
    Action.CHAT: MEMBER_AND_ADMIN,
    Action.ASSET_UPLOAD: MEMBER_AND_ADMIN,
    Action.ASSET_VIEW: MEMBER_AND_ADMIN,
    Action.ASSET_LABEL_RAISE: ADMIN_ONLY,
    Action.CONVERSATION_VIEW_ANY: ADMIN_ONLY,
    Action.TASK_TEMPLATE_MANAGE: ADMIN_ONLY,
    Action.DEPARTMENT_API_KEY_MANAGE: ADMIN_ONLY,
    Action.DEPARTMENT_MODEL_MANAGE: ADMIN_ONLY,
    Action.EXTRACTION_RUN: MEMBER_AND_ADMIN,
    Action.DOCUMENT_SEARCH: MEMBER_AND_ADMIN,
    Action.USAGE_VIEW: ADMIN_ONLY,
}
# Actions on an object owned by the member (bob): who else may take them.
OWNED_EXPECTED = {
    Action.ASSET_DELETE: {"department_admin": OK, "member": OK},  # the uploader or an administrator
    Action.CONVERSATION_OWN: {"department_admin": NOT_FOUND, "member": OK},  # private: the owner only
    Action.CONVERSATION_EXPORT: {"department_admin": NOT_FOUND, "member": OK},  # as CONVERSATION_OWN
    Action.EXTRACTION_REVIEW: {"department_admin": OK, "member": OK},  # its requester or an administrator
    Action.BATCH_CANCEL: {"department_admin": OK, "member": OK},  # who started it or an administrator
}
SWITCHED_EXPECTED = {Action.CONVERSATION_CONTENT_VIEW}  # the department administrator, if the policy allows
API_SCOPES = {
    Action.API_CHAT: "chat",
    Action.API_ASSETS_READ: "assets:read",
    Action.API_ASSETS_WRITE: "assets:write",
    Action.API_EXTRACT: "extract",
    Action.API_AUDIT_READ: "audit:read",
}


# Whom department data access may be given to: everyone but the three administrators.
HOLDER_EXPECTED = {Action.DEPARTMENT_ACCESS_HOLD: {"department_admin", "member", "outsider"}}


def test_every_action_has_an_expectation():
    covered = PUBLIC | OPERATORS | SIGNED_IN | set(ADMIN_EXPECTED) | set(DEPARTMENT_EXPECTED) | set(OWNED_EXPECTED)
    covered |= set(HOLDER_EXPECTED)
    assert covered | SWITCHED_EXPECTED | set(API_SCOPES) == set(Action) == set(POLICY)


@pytest.fixture(autouse=True)
def administrators_subnet(settings):
    """The matrix is exercised from the administrators' own subnet, as configured in a deployment."""
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
    except SignInRequired:
        return SIGN_IN
    except Http404:
        return NOT_FOUND
    except PermissionDenied:
        return FORBIDDEN
    return OK


def last_denial():
    return AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).order_by("-sequence").first()


@pytest.mark.parametrize("action", sorted(PUBLIC), ids=str)
def test_public_actions_need_nobody(action, system_context):
    assert outcome(AnonymousUser(), action) == OK
    assert outcome(None, action) == OK


def test_an_operators_action_is_nobodys_without_a_request_that_qualifies(people, system_context):
    """``/metrics`` needs no account, but an operator's request: decided without one (no address,
    no token), it is refused to everyone, administrators included."""
    for action in OPERATORS:
        for subject in (None, AnonymousUser(), *people.values()):
            assert outcome(subject, action) == NOT_FOUND
        assert decide(None, action, source_ip="127.0.0.1", check_network=True).allowed


@pytest.mark.parametrize("action", sorted(SIGNED_IN), ids=str)
def test_signed_in_actions_need_a_person(people, action, system_context):
    assert all(outcome(person, action) == OK for person in people.values())
    assert outcome(AnonymousUser(), action) == SIGN_IN
    assert last_denial().details["reason"] == "not signed in"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(ADMIN_EXPECTED), ids=str)
def test_admin_action_matrix(people, role, action, system_context):
    expected = OK if role in ADMIN_EXPECTED[action] else FORBIDDEN
    before = AuditEntry.objects.count()
    assert outcome(people[role], action, source_ip="10.1.2.3") == expected
    if expected != OK:
        denial = last_denial()
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


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(OWNED_EXPECTED), ids=str)
def test_owned_object_matrix(people, personas, role, action, system_context):
    expected = OWNED_EXPECTED[action].get(role, NOT_FOUND)
    owner = personas.member.pk
    assert outcome(people[role], action, department=personas.department_a, owner_id=owner) == expected
    if action in (Action.ASSET_DELETE, Action.EXTRACTION_REVIEW, Action.BATCH_CANCEL) and role == "member":
        # bob may delete his own files (correct his results, stop his batches), not the administrator's
        assert outcome(people[role], action, department=personas.department_a, owner_id=personas.admin.pk) == 403


def test_conversation_content_follows_the_departments_chat_policy(people, personas, system_context):
    department = personas.department_a
    assert outcome(people["department_admin"], Action.CONVERSATION_CONTENT_VIEW, department=department) == FORBIDDEN
    assert "chat.admin_may_read_content" in last_denial().details["reason"]
    with department_scope(department):
        ChatPolicy.objects.create(department=department, admin_may_read_content=True)
    assert outcome(people["department_admin"], Action.CONVERSATION_CONTENT_VIEW, department=department) == OK
    assert outcome(people["member"], Action.CONVERSATION_CONTENT_VIEW, department=department) == FORBIDDEN
    assert outcome(people["outsider"], Action.CONVERSATION_CONTENT_VIEW, department=department) == NOT_FOUND


@pytest.mark.parametrize("action", list(API_SCOPES), ids=str)
def test_api_actions_follow_the_keys_scopes(people, personas, action, system_context):
    scope = API_SCOPES[action]
    if scope == "audit:read":
        holder = api_key_create(
            department=None, name="SIEM", scopes=[scope], created_by=people["audit"], expires_at=None
        ).key
        lacking = api_key_create(
            department=personas.department_a, name="ERP", scopes=["chat"], created_by=personas.admin, expires_at=None
        ).key
    else:
        holder = api_key_create(
            department=personas.department_a, name="ERP", scopes=[scope], created_by=personas.admin, expires_at=None
        ).key
        other = "chat" if scope != "chat" else "extract"
        lacking = api_key_create(
            department=personas.department_a, name="OA", scopes=[other], created_by=personas.admin, expires_at=None
        ).key
        # another department's object answers 404 to a key that holds the scope
        assert outcome(holder, action, department=personas.department_b) == NOT_FOUND
    assert outcome(holder, action) == OK
    assert outcome(lacking, action) == FORBIDDEN
    assert last_denial().details["reason"] == f"missing scope {scope}"
    # People never hold API actions, whatever their role.
    assert all(outcome(person, action) == FORBIDDEN for person in people.values())


@pytest.mark.parametrize("role", ROLES)
def test_department_access_is_held_by_anyone_but_the_administrators(people, role, system_context):
    person = people[role]
    expected = OK if role in HOLDER_EXPECTED[Action.DEPARTMENT_ACCESS_HOLD] else FORBIDDEN
    assert outcome(person, Action.DEPARTMENT_ACCESS_HOLD) == expected
    person.is_active = False  # a disabled administrator's account is still an administrator's
    assert outcome(person, Action.DEPARTMENT_ACCESS_HOLD) == expected


@pytest.mark.parametrize("role", ["system", "security", "audit"])
def test_an_administrators_membership_opens_nothing(people, personas, role, system_context):
    """A membership row written around every guard (here: with the database's guard lifted, as
    before the upgrade) still lets no administrator into the department."""
    from django.db import connection

    from departments.models import Membership
    from departments.triggers import triggers_install, triggers_remove

    triggers_remove(connection)
    Membership.objects.create(user=people[role], department=personas.department_a, role=MembershipRole.ADMIN)
    triggers_install(connection)
    for action in (Action.DEPARTMENT_ENTER, Action.ASSET_VIEW, Action.CONVERSATION_VIEW_ANY):
        assert outcome(people[role], action, department=personas.department_a) == NOT_FOUND
        assert last_denial().details["reason"] == "an administrator account holds no department access"


def test_inactive_department_or_user_is_404_for_members(people, personas, system_context):
    personas.department_a.is_active = False
    personas.department_a.save()
    assert outcome(people["member"], Action.CHAT, department=personas.department_a) == NOT_FOUND


def test_a_role_change_that_takes_a_grant_away_is_a_demotion():
    admin, member = MembershipRole.ADMIN, MembershipRole.MEMBER
    assert department_role_loses_grants(admin, member)
    assert not department_role_loses_grants(member, admin)
    assert not department_role_loses_grants(None, member)
    assert department_role_strongest([member, admin]) == department_role_strongest([admin, member]) == admin


def test_administrators_are_the_three_roles(people):
    assert {role for role, person in people.items() if is_administrator(person)} == {"system", "security", "audit"}


CONSOLE_EXPECTED = {
    # model label: {role: operations}
    "accounts.user": {"system": "view add change"},
    "departments.department": {"system": "view add change"},
    "departments.membership": {"security": "view add change delete"},
    "accounts.administratorrole": {"security": "view change"},
    "accounts.departmentlabel": {"security": "view change"},
    "accounts.directorygroupmapping": {"security": "view add change delete"},
    "accounts.securitypolicy": {"security": "view add change"},
    "compliance.retentionpolicy": {"security": "view add change delete"},
    "inference.chatpolicy": {"security": "view add change delete"},
    # approve / activate / roll back are pages of their own, each asking its action
    "inference.modelversion": {"system": "view add", "security": "view"},
    "departments.apikey": {"security": "view change"},
    "accounts.loginthrottle": {"system": "view delete", "security": "view delete"},
    "assets.asset": {"system": "view", "security": "view change"},
    "compliance.auditentry": {"audit": "view"},
    "compliance.auditarchive": {"audit": "view"},
    "compliance.auditanchor": {"audit": "view"},
    "auth.group": {},
    "otp_totp.totpdevice": {},
    "otp_static.staticdevice": {},
}


def test_every_console_model_has_an_expectation():
    assert set(CONSOLE) <= set(CONSOLE_EXPECTED)


@pytest.mark.parametrize("role", ["system", "security", "audit", "department_admin"])
@pytest.mark.parametrize("label", list(CONSOLE_EXPECTED))
def test_console_model_matrix(people, role, label):
    app_label, model = label.split(".")
    granted = set(CONSOLE_EXPECTED[label].get(role, "").split())
    for operation in ("view", "add", "change", "delete"):
        assert console_permission(people[role], f"{app_label}.{operation}_{model}") == (operation in granted), (
            role,
            label,
            operation,
        )
        assert people[role].has_perm(f"{app_label}.{operation}_{model}") == (operation in granted)


def test_the_audit_trail_has_no_write_operation_in_the_console():
    for label in ("compliance.auditentry", "compliance.auditarchive", "compliance.auditanchor"):
        assert set(CONSOLE[label]) == {"view"}


def test_superuser_flag_grants_nothing(make_user):
    user = make_user("root", is_superuser=True)
    assert not user.has_perm("accounts.view_user")
    assert not user.has_module_perms("accounts")
