"""Separation of duties (SM-1..3, AC-4): an administrator account — system, security or audit —
holds no department membership and no department API key, whatever the path (the console, the
REST API, the directory's group mapping, management commands, the services, the database), and
every refusal is recorded. Only the security administrator grants memberships.

The review's probe: the system administrator added himself to a department as its administrator
in the console, then downloaded its files, read its conversations and minted a 10-year API key.
"""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.utils import timezone

from accounts.directory.group_mapping import memberships_apply
from accounts.models import DirectoryGroupMapping, User
from accounts.permissions import ADMINISTRATOR_HOLDS_NO_DEPARTMENT_ACCESS, Action, RefusedForbidden
from accounts.roles import AdminRole, MembershipRole
from compliance.events import EventType, Outcome
from compliance.models import AuditEntry
from compliance.report import FAIL, PASS, compliance_report_build
from departments.api_keys.models import ADMINISTRATOR_KEY_REFUSED, ApiKey, key_generate, key_hash
from departments.api_keys.services import api_key_create, api_key_revoke
from departments.models import ADMINISTRATOR_MEMBERSHIP_REFUSED, Membership
from departments.services import membership_add, membership_remove
from departments.tenancy import all_departments
from departments.triggers import REFUSED, triggers_install, triggers_remove
from tests.accounts.conftest import sign_in_with_totp
from tests.support.slapd import USER_PASSWORD, group_dn

pytestmark = pytest.mark.django_db

ROLES = [AdminRole.SYSTEM, AdminRole.SECURITY, AdminRole.AUDIT]


@pytest.fixture
def admins(personas, make_admin, system_context):
    """{role: (user, signed-in console client)} for the three administrators."""
    signed_in = {}
    for role in ROLES:
        user, device = make_admin(str(role), username=f"{role}admin")
        client = Client()
        sign_in_with_totp(client, user, device)
        signed_in[str(role)] = (user, client)
    return signed_in


def denials():
    return AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).order_by("sequence")


def last_denial():
    return denials().last()


def assert_last_denial(**expected) -> None:
    """The latest denial holds the ``expected`` values: entry fields by name, ``details__<key>``
    for its details."""
    entry = last_denial()
    found = {}
    for name in expected:
        key = name.removeprefix("details__")
        found[name] = entry.details.get(key) if key != name else getattr(entry, name)
    assert found == expected


def legacy_access(*, membership_of=None, key_of=None, department):
    """Rows as an installation from before this release may hold them: the database's guard is
    lifted while they are written, then put back (it does not look at rows already there)."""
    triggers_remove(connection)
    try:
        created = []
        if membership_of is not None:
            created.append(
                Membership.objects.create(user=membership_of, department=department, role=MembershipRole.ADMIN)
            )
        if key_of is not None:
            raw = key_generate()
            key = ApiKey(
                department=department,
                name="10-year key",
                prefix=raw[:12],
                secret_hash=key_hash(raw),
                scopes=["chat", "assets:read", "assets:write", "extract"],
                expires_at=timezone.now() + timedelta(days=3650),
                created_by=key_of,
                created_by_name=key_of.username,
            )
            with all_departments(reason="a test writes a key as an older release could"):
                key.save()
            created.append((key, raw))
        return created
    finally:
        triggers_install(connection)


# --- the console ---------------------------------------------------------------------------------


def test_console_system_admin_cannot_add_himself_to_a_department(admins, personas):
    sysadmin, console = admins["system"]
    before = denials().count()
    for page in ("/admin/departments/membership/", "/admin/departments/membership/add/"):
        assert console.get(page).status_code == 403
    response = console.post(
        "/admin/departments/membership/add/",
        {"user": sysadmin.pk, "department": personas.department_a.pk, "role": MembershipRole.ADMIN},
    )
    assert response.status_code == 403
    assert not Membership.objects.filter(user=sysadmin).exists()
    assert denials().count() == before + 3
    assert_last_denial(
        actor_name="systemadmin",
        object_type="departments.membership",
        details__action=Action.MEMBERSHIP_MANAGE.value,
        details__method="POST",
    )


@pytest.mark.parametrize("role", ROLES)
def test_console_security_admin_gives_no_administrator_a_membership(admins, personas, role):
    _, console = admins["security"]
    administrator = admins[str(role)][0]
    response = console.post(
        "/admin/departments/membership/add/",
        {"user": administrator.pk, "department": personas.department_a.pk, "role": MembershipRole.ADMIN},
    )
    assert response.status_code == 200  # the form again, with the policy's answer
    assert str(ADMINISTRATOR_MEMBERSHIP_REFUSED) in response.content.decode()
    assert not Membership.objects.filter(user=administrator).exists()
    assert_last_denial(
        actor_name="securityadmin",
        object_type="accounts.user",
        object_repr=administrator.username,
        details__action=Action.DEPARTMENT_ACCESS_HOLD.value,
        details__path="/admin/departments/membership/add/",
    )


def test_console_security_admin_grants_memberships_to_people(admins, personas, make_user):
    _, console = admins["security"]
    dave = make_user("dave")
    response = console.post(
        "/admin/departments/membership/add/",
        {"user": dave.pk, "department": personas.department_a.pk, "role": MembershipRole.MEMBER},
    )
    assert response.status_code == 302
    membership = Membership.objects.get(user=dave)
    entry = AuditEntry.objects.filter(event_type=EventType.MEMBERSHIP_ADD).latest("sequence")
    assert (entry.actor_name, entry.object_id) == ("securityadmin", str(membership.pk))
    # A membership changes its role only; removing it is audited too.
    response = console.post(f"/admin/departments/membership/{membership.pk}/change/", {"role": MembershipRole.ADMIN})
    assert response.status_code == 302
    change = AuditEntry.objects.filter(event_type=EventType.MEMBERSHIP_CHANGE).latest("sequence")
    assert change.details["before"] == {"role": "member"} and change.details["after"] == {"role": "admin"}
    response = console.post(f"/admin/departments/membership/{membership.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Membership.objects.filter(user=dave).exists()
    assert AuditEntry.objects.filter(event_type=EventType.MEMBERSHIP_REMOVE, actor_name="securityadmin").exists()


def test_console_role_is_not_given_to_an_account_holding_department_access(admins, personas):
    _, console = admins["security"]
    bob = personas.member  # a member of finance
    response = console.post(f"/admin/accounts/administratorrole/{bob.pk}/change/", {"admin_role": "system"})
    assert response.status_code == 200
    bob.refresh_from_db()
    assert bob.admin_role == ""
    assert_last_denial(
        actor_name="securityadmin",
        object_repr="bob",
        details__action=Action.ROLE_ASSIGN.value,
        details__role="system",
    )


# --- what an administrator's leftover membership or key opens: nothing -----------------------------


def test_a_leftover_membership_opens_no_department_page(admins, personas):
    sysadmin, console = admins["system"]
    legacy_access(membership_of=sysadmin, department=personas.department_a)
    for page in ("/d/finance/", "/d/finance/files/", "/d/finance/api-keys/", "/d/finance/chat/admin/"):
        before = denials().count()
        assert console.get(page).status_code == 404, page
        assert denials().count() == before + 1
        assert last_denial().details["reason"] == "an administrator account holds no department access"


# --- the REST API ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_api_key_for_an_administrator_is_refused_and_recorded(admins, personas, role):
    administrator = admins[str(role)][0]
    with pytest.raises(RefusedForbidden, match=ADMINISTRATOR_HOLDS_NO_DEPARTMENT_ACCESS):
        api_key_create(
            department=personas.department_a,
            name="10-year key",
            scopes=["chat", "assets:read"],
            created_by=administrator,
            expires_at=timezone.now() + timedelta(days=3650),
        )
    with all_departments(reason="test"):
        assert not ApiKey.objects.filter(created_by=administrator).exists()
    assert_last_denial(
        actor_name=administrator.username,
        object_repr=administrator.username,
        department_slug="finance",
        details__action=Action.DEPARTMENT_ACCESS_HOLD.value,
    )


@pytest.mark.parametrize("role", ROLES)
def test_api_refuses_an_administrators_leftover_key(admins, personas, role):
    administrator = admins[str(role)][0]
    [(key, raw)] = legacy_access(key_of=administrator, department=personas.department_a)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    for path in ("/v1/models", "/api/v1/assets"):
        before = denials().count()
        assert api.get(path).status_code in (401, 403), path
        assert denials().count() == before + 1
        entry = last_denial()
        assert (entry.actor_type, entry.details["path"]) == ("api_key", path)


def test_the_audit_administrators_audit_key_is_still_theirs(admins):
    auditor = admins["audit"][0]
    created = api_key_create(department=None, name="SIEM", scopes=["audit:read"], created_by=auditor)
    assert Client(HTTP_AUTHORIZATION=f"Bearer {created.raw_key}").get("/api/v1/audit/entries").status_code == 200


# --- the directory's group mapping -----------------------------------------------------------------


def test_directory_mapping_gives_an_administrator_nothing(
    client, directory, personas, make_admin, make_user, system_context
):
    DirectoryGroupMapping.objects.create(
        group_dn=group_dn("finance-staff"), department=personas.department_a, role=MembershipRole.ADMIN
    )
    # A local administrator whose name the directory also knows, in a mapped group.
    sysadmin, _ = make_admin("system", username="dora")
    with pytest.raises(RefusedForbidden):
        memberships_apply(user=sysadmin, group_dns=[group_dn("finance-staff")])
    assert_last_denial(
        actor_name="system",
        object_repr="dora",
        details__action=Action.DEPARTMENT_ACCESS_HOLD.value,
        details__source="directory",
    )
    # Signing in with the directory's password, and the directory synchronisation, give nothing either.
    client.post("/accounts/login/", {"username": "dora", "password": USER_PASSWORD})
    call_command("ldap_sync", stdout=io.StringIO())
    assert not Membership.objects.filter(user=sysadmin).exists()
    # Anyone else is mapped as before.
    dave = make_user("dave")
    assert memberships_apply(user=dave, group_dns=[group_dn("finance-staff")]).added == ["finance"]


# --- management commands -----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_command_mints_no_department_key_for_an_administrator(admins, personas, role):
    administrator = admins[str(role)][0]
    before = denials().count()
    with pytest.raises(CommandError, match=ADMINISTRATOR_HOLDS_NO_DEPARTMENT_ACCESS):
        call_command(
            "api_key_create",
            *("--department", "finance", "--name", "ERP", "--scope", "chat", "--days", "3650"),
            *("--owner", administrator.username),
            stdout=io.StringIO(),
        )
    with all_departments(reason="test"):
        assert not ApiKey.objects.filter(created_by=administrator).exists()
    assert denials().count() == before + 1
    assert (last_denial().actor_name, last_denial().details["action"]) == ("system", "department.access_hold")


# --- services and the database ---------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_membership_service_refuses_an_administrator(admins, personas, role):
    administrator = admins[str(role)][0]
    with pytest.raises(RefusedForbidden):
        membership_add(user=administrator, department=personas.department_a, acting_user="system")
    assert last_denial().details["action"] == Action.DEPARTMENT_ACCESS_HOLD.value
    assert last_denial().outcome == Outcome.DENIED


def test_only_the_security_administrator_grants_memberships(admins, personas, make_user):
    dave = make_user("dave")
    for role in ("system", "audit"):
        with pytest.raises(RefusedForbidden):
            membership_add(user=dave, department=personas.department_a, acting_user=admins[role][0])
        assert last_denial().details["action"] == Action.MEMBERSHIP_MANAGE.value
    membership = membership_add(user=dave, department=personas.department_a, acting_user=admins["security"][0])
    membership_remove(membership=membership, acting_user=admins["security"][0])


def test_the_database_refuses_whatever_the_path(admins, personas):
    sysadmin, auditor = admins["system"][0], admins["audit"][0]
    with pytest.raises(DatabaseError, match=re.escape(REFUSED)), transaction.atomic():
        Membership.objects.bulk_create([Membership(user=sysadmin, department=personas.department_a)])
    membership = Membership.objects.get(user=personas.member)
    with pytest.raises(DatabaseError, match=re.escape(REFUSED)), transaction.atomic():
        Membership.objects.filter(pk=membership.pk).update(user=auditor)
    # A member becomes an administrator only without department access (here: bob's membership).
    with pytest.raises(DatabaseError, match=re.escape(REFUSED)), transaction.atomic():
        User.objects.filter(pk=personas.member.pk).update(admin_role=AdminRole.AUDIT)
    raw = key_generate()
    key = ApiKey(
        department=personas.department_a,
        name="x",
        prefix=raw[:12],
        secret_hash=key_hash(raw),
        scopes=["chat"],
        expires_at=timezone.now() + timedelta(days=1),
        created_by=sysadmin,
    )
    with pytest.raises(DatabaseError, match=re.escape(REFUSED)), transaction.atomic():
        with all_departments(reason="test"):
            key.save()


def test_model_validation_names_the_field(admins, personas):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        Membership(user=admins["security"][0], department=personas.department_a).full_clean()
    assert refused.value.message_dict["user"] == [str(ADMINISTRATOR_MEMBERSHIP_REFUSED)]
    key = ApiKey(department=personas.department_a, name="x", scopes=["chat"], created_by=admins["system"][0])
    with pytest.raises(ValidationError) as refused:
        key.clean()
    assert refused.value.message_dict["department"] == [str(ADMINISTRATOR_KEY_REFUSED)]


# --- the compliance report's live check -------------------------------------------------------------


def test_compliance_report_lists_administrators_holding_access_until_they_are_gone(admins, personas):
    sysadmin, secadmin = admins["system"][0], admins["security"][0]
    [membership] = legacy_access(membership_of=sysadmin, department=personas.department_a)
    [(key, _)] = legacy_access(key_of=secadmin, department=personas.department_b)

    def ac4():
        return next(result for result in compliance_report_build().results if result.control == "AC-4")

    result = ac4()
    assert result.status == FAIL
    [line] = [line for line in result.evidence if "holding department access" in line]
    assert line.startswith("✗")
    assert "systemadmin: membership finance (admin)" in line
    assert f"securityadmin: API key {key.prefix}… (quality)" in line
    printed = io.StringIO()
    call_command("compliance_report", stdout=printed, stderr=io.StringIO())
    assert "systemadmin: membership finance (admin)" in printed.getvalue()

    membership_remove(membership=membership, acting_user="system")
    api_key_revoke(key=key, acting_user="system")
    result = ac4()
    assert result.status == PASS, result.evidence
    assert "✓ administrator accounts holding department access: none" in result.evidence
    assert any("triggers in place" in line for line in result.evidence)
