"""Directory sign-in against a real slapd: mapping, nesting, removal, refusals, StartTLS."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

from accounts.directory.settings import PLAIN_LDAP_REFUSED
from accounts.models import AccountSource, DirectoryGroupMapping, User
from accounts.roles import MembershipRole
from compliance.events import EventType
from compliance.models import AuditEntry
from departments.models import Membership, MembershipSource
from tests.accounts.conftest import directory_use
from tests.support.slapd import USER_PASSWORD, directory_settings, group_dn

pytestmark = pytest.mark.django_db


@pytest.fixture
def mappings(personas, system_context):
    """finance-staff → finance member, finance-admins → finance admin, quality-staff → quality member."""
    finance, quality = personas.department_a, personas.department_b
    for name, department, role in [
        ("finance-staff", finance, MembershipRole.MEMBER),
        ("finance-admins", finance, MembershipRole.ADMIN),
        ("quality-staff", quality, MembershipRole.MEMBER),
        ("hana-group", finance, MembershipRole.MEMBER),
        ("ivan-group", quality, MembershipRole.MEMBER),
    ]:
        DirectoryGroupMapping.objects.create(group_dn=group_dn(name).upper(), department=department, role=role)
    return personas


def sign_in(client, username, password=USER_PASSWORD):
    return client.post(reverse("login"), {"username": username, "password": password})


def test_directory_login_creates_user_with_limited_attributes_and_mapped_memberships(client, directory, mappings):
    response = sign_in(client, "dora")
    assert response.status_code == 302
    assert response["Location"] == reverse("departments:picker")
    user = User.objects.get(username="dora")
    assert user.source == AccountSource.DIRECTORY
    assert (user.first_name, user.last_name, user.email, user.employee_number) == (
        "Dora",
        "Deng",
        "dora@example.test",
        "E1001",
    )
    assert not user.has_usable_password()  # the directory holds the password, never the database
    memberships = {(m.department.slug, m.role, m.source) for m in Membership.objects.filter(user=user)}
    assert memberships == {("finance", "member", "directory"), ("quality", "member", "directory")}
    assert AuditEntry.objects.filter(event_type=EventType.MEMBERSHIP_ADD, object_repr__contains="dora").count() == 2
    assert client.get(reverse("chat:home", args=["finance"])).status_code == 200


def test_nested_group_membership_maps_to_department_admin(client, directory, mappings):
    assert sign_in(client, "erik").status_code == 302
    membership = Membership.objects.get(user__username="erik")
    assert (membership.department.slug, membership.role) == ("finance", MembershipRole.ADMIN)


def test_membership_removed_when_group_is_gone_but_manual_membership_kept(client, directory, mappings):
    assert sign_in(client, "hana").status_code == 302
    hana = User.objects.get(username="hana")
    assert Membership.objects.get(user=hana).department.slug == "finance"
    # An administrator adds hana to quality by hand; the directory knows nothing of it.
    Membership.objects.create(user=hana, department=mappings.department_b, source=MembershipSource.MANUAL)
    client.post(reverse("logout"))

    directory.group_remove_member("hana-group", "hana")
    try:
        assert sign_in(client, "hana").status_code == 302
    finally:
        directory.group_add_member("hana-group", "hana")
    remaining = {(m.department.slug, m.source) for m in Membership.objects.filter(user=hana)}
    assert remaining == {("quality", "manual")}
    removal = AuditEntry.objects.filter(event_type=EventType.MEMBERSHIP_REMOVE, department_slug="finance").last()
    assert removal.details["user"] == "hana" and removal.actor_name == "system"


def test_disabled_directory_user_is_refused(client, directory, mappings):
    response = sign_in(client, "frank")
    assert response.status_code == 200
    assert not User.objects.filter(username="frank").exists()


def test_user_without_mapped_group_is_refused(client, directory, mappings):
    response = sign_in(client, "gina")
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    entry = AuditEntry.objects.filter(event_type=EventType.LOGIN_FAILED).last()
    assert entry.details["reason"] == "no mapped directory group"


def test_wrong_directory_password_is_refused(client, directory, mappings):
    assert sign_in(client, "dora", "wrong-Password-1").status_code == 200
    assert "_auth_user_id" not in client.session


def test_empty_password_never_binds(directory, mappings, rf):
    """No anonymous ("unauthenticated") bind: the backend itself refuses an empty password."""
    from accounts.directory.backends import DirectoryBackend

    request = rf.post("/")
    assert DirectoryBackend().authenticate(request, username="dora", password="") is None
    assert not User.objects.filter(username="dora").exists()


def test_empty_password_through_the_login_form_is_refused(client, directory, mappings):
    response = client.post(reverse("login"), {"username": "dora", "password": ""})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_directory_entry_cannot_take_over_a_local_account(client, directory, mappings):
    """``bob`` exists locally (personas) and in the directory: the directory password must fail."""
    assert sign_in(client, "bob").status_code == 200
    bob = User.objects.get(username="bob")
    assert bob.source == AccountSource.LOCAL
    assert not Membership.objects.filter(user=bob, source=MembershipSource.DIRECTORY).exists()
    # ... and the local password still works.
    assert sign_in(client, "bob", "Correct-Horse-9").status_code == 302


def test_starttls_with_the_right_ca(client, slapd, settings, monkeypatch, mappings):
    directory_use(slapd, settings, monkeypatch, LDAP_START_TLS="true", LDAP_CA_FILE=str(slapd.ca_file))
    assert sign_in(client, "dora").status_code == 302
    assert User.objects.filter(username="dora", source=AccountSource.DIRECTORY).exists()


def test_starttls_refuses_a_server_certificate_from_another_ca(client, slapd, settings, monkeypatch, mappings):
    directory_use(slapd, settings, monkeypatch, LDAP_START_TLS="true", LDAP_CA_FILE=str(slapd.other_ca_file))
    assert sign_in(client, "dora").status_code == 200
    assert not User.objects.filter(username="dora").exists()


def test_plain_ldap_is_refused_where_tls_is_required(slapd, monkeypatch):
    directory_settings(slapd, monkeypatch)  # sets the environment
    from accounts.directory.settings import ldap_settings_from_env

    with pytest.raises(ImproperlyConfigured, match="clear text"):
        ldap_settings_from_env(is_production=True)
    monkeypatch.setenv("LDAP_START_TLS", "true")
    assert ldap_settings_from_env(is_production=True)["AUTH_LDAP_START_TLS"] is True
    assert "clear text" in PLAIN_LDAP_REFUSED


def test_ldap_is_off_without_server_uri(monkeypatch):
    from accounts.directory.settings import ldap_settings_from_env

    monkeypatch.delenv("LDAP_SERVER_URI", raising=False)
    assert ldap_settings_from_env(is_production=True) == {"LDAP_ENABLED": False, "LDAP_GROUP_MAPPINGS": []}
