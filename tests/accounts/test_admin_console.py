"""The administrators' console: network allow-list, two-factor, each role sees only its own pages,
every change audited with before/after values (never a password hash)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import LoginThrottle, SecurityPolicy, User
from accounts.roles import AdminRole
from compliance.events import EventType
from compliance.models import AuditEntry
from departments.models import Classification, Membership
from departments.services import membership_remove
from tests.accounts.conftest import TEST_PASSWORD, sign_in_with_totp

pytestmark = pytest.mark.django_db

PAGES = {
    "users": "/admin/accounts/user/",
    "departments": "/admin/departments/department/",
    "memberships": "/admin/departments/membership/",
    "roles": "/admin/accounts/administratorrole/",
    "labels": "/admin/accounts/departmentlabel/",
    "group_mappings": "/admin/accounts/directorygroupmapping/",
    "security_policy": "/admin/accounts/securitypolicy/",
    "login_locks": "/admin/accounts/loginthrottle/",
}
SEES = {
    "system": {"users", "departments", "login_locks"},
    "security": {"memberships", "roles", "labels", "group_mappings", "security_policy", "login_locks"},
    "audit": set(),
}


@pytest.fixture
def console(personas, make_admin):
    """A verified (password + TOTP) console client per administrator role."""
    clients = {}
    for role in (AdminRole.SYSTEM, AdminRole.SECURITY, AdminRole.AUDIT):
        user, device = make_admin(role)
        client = Client()
        sign_in_with_totp(client, user, device)
        client.user = user
        clients[str(role)] = client
    return clients


@pytest.mark.parametrize(
    "path", ["/admin/auth/group/", "/admin/otp_totp/totpdevice/", "/admin/otp_static/staticdevice/"]
)
def test_pages_the_table_grants_to_nobody_are_not_in_the_console(console, path):
    assert all(client.get(path).status_code == 404 for client in console.values())


@pytest.mark.parametrize("role", ["system", "security", "audit"])
@pytest.mark.parametrize("page", list(PAGES))
def test_each_role_sees_only_its_own_pages(console, role, page):
    expected = 200 if page in SEES[role] else 403
    assert console[role].get(PAGES[page]).status_code == expected


@pytest.mark.parametrize("page", list(PAGES))
def test_member_gets_403_and_anonymous_is_sent_to_sign_in(client, personas, page):
    response = client.get(PAGES[page])
    # Straight to the platform's sign-in (the console has none of its own), the refusal on record.
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    denial = AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).latest("sequence")
    assert (denial.details["reason"], denial.details["path"]) == ("not signed in", PAGES[page])
    client.force_login(personas.admin)  # a department administrator is no console administrator
    assert client.get(PAGES[page], follow=True).status_code == 403


def test_index_lists_only_the_roles_models(console):
    models = {m["object_name"] for app in console["security"].get("/admin/").context["app_list"] for m in app["models"]}
    own = {"AdministratorRole", "DepartmentLabel", "DirectoryGroupMapping", "SecurityPolicy", "LoginThrottle"}
    own |= {"Membership"}  # granting department data access is the security administrator's
    # Plus, where their apps register them, files' labels and retention policies; never anything else.
    # ApiKey: review and revoke; ChatPolicy: whether department admins may read chat content;
    # ModelVersion: approving model versions (docs/inference.md, "Model versions").
    assert own <= models <= own | {"Asset", "RetentionPolicy", "ApiKey", "ChatPolicy", "ModelVersion"}
    audit_models = {
        m["object_name"] for app in console["audit"].get("/admin/").context["app_list"] for m in app["models"]
    }
    assert audit_models <= {"AuditEntry", "AuditArchive", "AuditAnchor"}


@pytest.mark.parametrize("path", ["/admin/", "/admin/login/", "/admin/accounts/user/"])
def test_console_is_404_from_outside_the_admin_networks(console, client, path):
    assert console["system"].get(path, REMOTE_ADDR="203.0.113.7").status_code == 404
    assert client.get(path, REMOTE_ADDR="203.0.113.7").status_code == 404
    denial = AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).order_by("sequence").last()
    assert denial.source_ip == "203.0.113.7" and "ADMIN_ALLOWED_NETWORKS" in denial.details["reason"]


def test_console_needs_a_two_factor_session(client, make_admin):
    user, _ = make_admin(AdminRole.SYSTEM)
    client.force_login(user)  # a session without the second factor
    assert client.get("/admin/", follow=True).status_code == 403


def test_admin_network_setting_is_honoured(console, settings):
    import ipaddress

    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("192.168.7.0/24")]
    assert console["system"].get("/admin/").status_code == 404  # the test client comes from 127.0.0.1
    assert console["system"].get("/admin/", REMOTE_ADDR="192.168.7.20").status_code == 200


def test_user_created_in_the_console_must_change_password_and_no_hash_is_audited(console):
    response = console["system"].post(
        "/admin/accounts/user/add/",
        {
            "username": "newcomer",
            "first_name": "New",
            "last_name": "Comer",
            "email": "",
            "password1": "Start-Pass-2468",
            "password2": "Start-Pass-2468",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    user = User.objects.get(username="newcomer")
    assert user.must_change_password and user.source == "local" and not user.admin_role
    entry = AuditEntry.objects.filter(event_type=EventType.ADMIN_CHANGE, object_repr="newcomer").get()
    assert entry.actor_name == console["system"].user.username
    assert user.password not in str(entry.details) and "Start-Pass-2468" not in str(entry.details)
    assert entry.details["after"]["password1"] == "(set)"
    # Its owner is sent to choose a new password at the first sign-in.
    response = Client().post(reverse("login"), {"username": "newcomer", "password": "Start-Pass-2468"})
    assert response["Location"] == reverse("login-password")


def test_system_admin_cannot_edit_other_administrators(console):
    security_admin = console["security"].user
    change = f"/admin/accounts/user/{security_admin.pk}/change/"
    assert console["system"].get(change).status_code == 200  # read-only view
    response = console["system"].post(change, {"username": "taken-over", "is_active": ""})
    assert response.status_code == 403
    assert console["system"].get(f"/admin/accounts/user/{security_admin.pk}/password/").status_code == 403
    security_admin.refresh_from_db()
    assert security_admin.username != "taken-over" and security_admin.is_active


def test_system_admin_disables_a_user_and_the_change_is_audited(console, personas, django_capture_on_commit_callbacks):
    bob_client = Client()
    bob_client.post(reverse("login"), {"username": "bob", "password": TEST_PASSWORD})
    bob = personas.member
    with django_capture_on_commit_callbacks(execute=True):
        response = console["system"].post(
            f"/admin/accounts/user/{bob.pk}/change/",
            {
                "username": "bob",
                "first_name": "",
                "last_name": "",
                "email": "",
                "employee_number": "",
                "must_change_password": "",
                "date_joined_0": "2026-01-01",
                "date_joined_1": "00:00:00",
            },
        )
    assert response.status_code == 302
    bob.refresh_from_db()
    assert not bob.is_active
    entry = AuditEntry.objects.filter(event_type=EventType.ADMIN_CHANGE, object_repr="bob").last()
    assert entry.details["before"]["is_active"] is True and entry.details["after"]["is_active"] is False
    assert bob_client.get(reverse("departments:picker")).status_code == 302  # session ended


def test_security_admin_assigns_roles_but_not_their_own(console, personas):
    bob = personas.member
    # An administrator holds no department access: bob's membership goes first.
    membership_remove(membership=Membership.objects.get(user=bob), acting_user="system")
    response = console["security"].post(f"/admin/accounts/administratorrole/{bob.pk}/change/", {"admin_role": "audit"})
    assert response.status_code == 302
    bob.refresh_from_db()
    assert bob.admin_role == AdminRole.AUDIT
    entry = AuditEntry.objects.filter(event_type=EventType.ROLE_CHANGE).get()
    assert entry.details["before"] == {"admin_role": ""} and entry.details["after"] == {"admin_role": "audit"}
    own = console["security"].user
    response = console["security"].post(f"/admin/accounts/administratorrole/{own.pk}/change/", {"admin_role": "system"})
    assert response.status_code == 403
    own.refresh_from_db()
    assert own.admin_role == AdminRole.SECURITY


def test_labels_belong_to_the_security_admin(console, personas):
    finance = personas.department_a
    console["system"].post(
        f"/admin/departments/department/{finance.pk}/change/",
        {"slug": "finance", "name": finance.name, "is_active": "on", "classification": str(Classification.SECRET)},
    )
    finance.refresh_from_db()
    assert finance.classification == Classification.INTERNAL  # read-only for the system admin
    response = console["security"].post(
        f"/admin/accounts/departmentlabel/{finance.pk}/change/", {"classification": str(Classification.SECRET)}
    )
    assert response.status_code == 302
    finance.refresh_from_db()
    assert finance.classification == Classification.SECRET


def test_security_policy_cannot_be_weakened_and_tightening_takes_effect(console, personas):
    values = {"login_lockout_seconds": "1800", "session_idle_seconds": "900", "password_max_age_days": "60"}
    weak = console["security"].post("/admin/accounts/securitypolicy/add/", {**values, "login_max_failures": "9"})
    assert weak.status_code == 200 and not SecurityPolicy.objects.exists()
    strict = console["security"].post("/admin/accounts/securitypolicy/add/", {**values, "login_max_failures": "3"})
    assert strict.status_code == 302
    assert AuditEntry.objects.filter(event_type=EventType.SECURITY_SETTING_CHANGE).exists()
    client = Client()
    for _ in range(3):
        client.post(reverse("login"), {"username": "bob", "password": "Wrong-pass-1"})
    assert LoginThrottle.objects.get(kind="account", key="bob").locked_until is not None


def test_unlock_from_the_console_is_audited(console, personas):
    client = Client()
    for _ in range(5):
        client.post(reverse("login"), {"username": "bob", "password": "Wrong-pass-1"}, REMOTE_ADDR="10.4.4.4")
    lock = LoginThrottle.objects.get(kind="account", key="bob")
    response = console["security"].post(f"/admin/accounts/loginthrottle/{lock.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not LoginThrottle.objects.filter(pk=lock.pk).exists()
    unlock = AuditEntry.objects.filter(event_type=EventType.UNLOCK).get()
    assert unlock.actor_name == console["security"].user.username
    assert client.post(reverse("login"), {"username": "bob", "password": TEST_PASSWORD}).status_code == 302
