"""The rules about whose account an administrator may act on are the policy layer's
(``accounts.permissions``): the system administrator changes no administrator's account (active
or not), nobody changes their own role, and who may reset whose second factor. Each is checked
through the policy function and through the real console page or reset path, with the action its
refusal records."""

from __future__ import annotations

import ipaddress

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import permissions
from accounts.permissions import Action, decide, two_factor_reset_decide
from accounts.roles import AdminRole
from compliance.events import EventType
from compliance.models import AuditEntry
from tests.accounts.conftest import sign_in_with_totp

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def loopback_is_an_admin_network(settings):
    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]


@pytest.fixture
def admins(make_admin, system_context):
    """The three administrators (a console client each, in English) and a disabled one."""
    people = {}
    for role in (AdminRole.SYSTEM, AdminRole.SECURITY, AdminRole.AUDIT):
        user, device = make_admin(str(role))
        client = Client()
        client.cookies["django_language"] = "en"
        sign_in_with_totp(client, user, device)
        client.user, client.device = user, device
        people[str(role)] = client
    disabled, disabled_device = make_admin(str(AdminRole.AUDIT), username="former-auditor")
    disabled.is_active = False
    disabled.save(update_fields=["is_active"])
    disabled.device = disabled_device
    people["disabled"] = disabled
    return people


def _denials(**where) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED, **where).order_by("sequence"))


# --- the system administrator changes people's accounts, never an administrator's ----------------


def test_the_policy_refuses_user_management_on_an_administrators_account(admins, personas):
    system = admins["system"].user
    assert decide(system, Action.USER_MANAGE)  # the page itself
    assert decide(system, Action.USER_MANAGE, account=personas.member)
    for account in (admins["security"].user, admins["audit"].user, admins["disabled"], system):
        decision = decide(system, Action.USER_MANAGE, account=account)
        assert not decision and decision.status == 403
        assert decision.message == permissions.ADMIN_ACCOUNT_REFUSED
    # Another role is refused the action itself, whatever the account.
    assert decide(admins["security"].user, Action.USER_MANAGE, account=personas.member).message == (
        permissions.ADMIN_ROLE_REFUSED
    )


def test_a_disabled_administrators_account_is_not_the_system_administrators_to_change(admins):
    console, disabled = admins["system"], admins["disabled"]
    change = f"/admin/accounts/user/{disabled.pk}/change/"
    assert console.get(change).status_code == 200  # read-only view
    response = console.post(change, {"username": "former-auditor", "is_active": "on", "date_joined_0": "2026-01-01"})
    assert response.status_code == 403
    assert console.get(f"/admin/accounts/user/{disabled.pk}/password/").status_code == 403
    disabled.refresh_from_db()
    assert not disabled.is_active  # not enabled again, to sign in as them
    refused = _denials(object_type="accounts.user", object_id=str(disabled.pk))
    assert [entry.details["action"] for entry in refused] == [Action.USER_MANAGE] * 2


def test_the_system_administrators_own_account_is_read_only(admins):
    console = admins["system"]
    own = console.user
    assert console.get(f"/admin/accounts/user/{own.pk}/change/").status_code == 200
    response = console.post(f"/admin/accounts/user/{own.pk}/change/", {"username": "renamed"})
    assert response.status_code == 403
    own.refresh_from_db()
    assert own.username != "renamed"


# --- nobody changes their own administrator role --------------------------------------------------


def test_the_policy_refuses_a_role_change_on_ones_own_account(admins, personas):
    security = admins["security"].user
    decision = decide(security, Action.ROLE_ASSIGN, account=security)
    assert not decision and decision.status == 403 and decision.message == permissions.OWN_ROLE_REFUSED
    assert decide(security, Action.ROLE_ASSIGN, account=admins["audit"].user)
    assert decide(security, Action.ROLE_ASSIGN, account=personas.member)
    # The role comes first: the system administrator assigns no roles at all.
    system = admins["system"].user
    assert decide(system, Action.ROLE_ASSIGN, account=system).message == permissions.ADMIN_ROLE_REFUSED


def test_the_role_page_refuses_ones_own_role_and_records_role_assign(admins):
    console = admins["security"]
    own = console.user
    response = console.post(f"/admin/accounts/administratorrole/{own.pk}/change/", {"admin_role": "system"})
    assert response.status_code == 403
    own.refresh_from_db()
    assert own.admin_role == AdminRole.SECURITY
    (entry,) = _denials(object_type="accounts.administratorrole", object_id=str(own.pk))
    assert entry.details["action"] == Action.ROLE_ASSIGN and entry.actor_name == own.username


def test_the_role_page_changes_another_administrators_role(admins):
    auditor = admins["audit"].user
    response = admins["security"].post(
        f"/admin/accounts/administratorrole/{auditor.pk}/change/", {"admin_role": "system"}
    )
    assert response.status_code == 302
    auditor.refresh_from_db()
    assert auditor.admin_role == AdminRole.SYSTEM


# --- who resets whose second factor ----------------------------------------------------------------


def test_the_policy_names_the_reset_and_decides_it(admins, personas):
    system, security, auditor = (admins[role].user for role in ("system", "security", "audit"))
    disabled, member = admins["disabled"], personas.member
    cases = [
        # (who, whose, action, allowed, message)
        (member, member, Action.OWN_ACCOUNT, True, ""),
        (auditor, auditor, Action.OWN_ACCOUNT, False, permissions.TWO_FACTOR_REQUIRED_FOR_ADMINS),
        (security, security, Action.OWN_ACCOUNT, False, permissions.TWO_FACTOR_REQUIRED_FOR_ADMINS),
        (system, member, Action.TWO_FACTOR_RESET, True, ""),
        (system, auditor, Action.ADMIN_TWO_FACTOR_RESET, False, permissions.ADMIN_TWO_FACTOR_RESET_SECURITY_ONLY),
        (system, disabled, Action.ADMIN_TWO_FACTOR_RESET, False, permissions.ADMIN_TWO_FACTOR_RESET_SECURITY_ONLY),
        (auditor, system, Action.ADMIN_TWO_FACTOR_RESET, False, permissions.ADMIN_TWO_FACTOR_RESET_SECURITY_ONLY),
        (security, auditor, Action.ADMIN_TWO_FACTOR_RESET, True, ""),
        (security, disabled, Action.ADMIN_TWO_FACTOR_RESET, True, ""),
        (security, member, Action.TWO_FACTOR_RESET, False, permissions.ADMIN_ROLE_REFUSED),
        (auditor, member, Action.TWO_FACTOR_RESET, False, permissions.ADMIN_ROLE_REFUSED),
    ]
    for who, whose, action, allowed, message in cases:
        got_action, decision = two_factor_reset_decide(who, whose)
        assert (got_action, decision.allowed, decision.message) == (action, allowed, message), (who, whose)
        assert decision.allowed or decision.status == 403


def _console_reset(client, page: str, action: str, *accounts):
    response = client.post(page, {"action": action, ACTION_CHECKBOX_NAME: [account.pk for account in accounts]})
    assert response.status_code == 302
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.mark.parametrize("target", ["audit", "disabled"])
def test_the_system_administrators_reset_of_an_administrators_factor_records_that_action(admins, target):
    account = admins[target] if target == "disabled" else admins[target].user
    device = account.device if target == "disabled" else admins[target].device
    shown = _console_reset(admins["system"], "/admin/accounts/user/", "reset_two_factor", account)
    assert TOTPDevice.objects.filter(pk=device.pk).exists()
    assert shown == [f"{account.username}: {permissions.ADMIN_TWO_FACTOR_RESET_SECURITY_ONLY}"]
    (entry,) = _denials(object_type="accounts.user", object_id=str(account.pk))
    assert entry.details["action"] == Action.ADMIN_TWO_FACTOR_RESET
    assert entry.actor_name == admins["system"].user.username
    assert "security administrator" in entry.details["reason"]


def test_the_system_administrator_resets_a_members_factor(admins, personas):
    TOTPDevice.objects.create(user=personas.member, name="authenticator", confirmed=True)
    shown = _console_reset(admins["system"], "/admin/accounts/user/", "reset_two_factor", personas.member)
    assert not TOTPDevice.objects.filter(user=personas.member).exists()
    assert shown == ["Two-factor authentication was reset for 1 account(s)."]


def test_the_security_administrator_resets_an_administrators_factor_but_not_their_own(admins):
    console, auditor = admins["security"], admins["audit"]
    page = "/admin/accounts/administratorrole/"
    shown = _console_reset(console, page, "reset_administrator_two_factor", auditor.user, console.user)
    assert not TOTPDevice.objects.filter(pk=auditor.device.pk).exists()
    assert TOTPDevice.objects.filter(pk=console.device.pk).exists()
    assert f"{console.user.username}: {permissions.TWO_FACTOR_REQUIRED_FOR_ADMINS}" in shown
    (entry,) = _denials(object_type="accounts.user", object_id=str(console.user.pk))
    assert entry.details["action"] == Action.OWN_ACCOUNT


def test_the_roles_page_resets_administrators_factors_never_a_members(admins, personas):
    """The security administrator's roles page lists every account; its reset is for
    administrators' factors alone: a member's is the system administrator's to reset."""
    member_device = TOTPDevice.objects.create(user=personas.member, name="authenticator", confirmed=True)
    shown = _console_reset(
        admins["security"], "/admin/accounts/administratorrole/", "reset_administrator_two_factor", personas.member
    )
    assert TOTPDevice.objects.filter(pk=member_device.pk).exists()
    assert shown == [f"{personas.member.username}: {permissions.ADMIN_ROLE_REFUSED}"]
    (entry,) = _denials(object_type="accounts.user", object_id=str(personas.member.pk))
    assert entry.details["action"] == Action.TWO_FACTOR_RESET
