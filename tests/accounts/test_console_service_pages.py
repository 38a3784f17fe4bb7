"""The console's service-written pages (``ServiceWritesAdmin``) when another request got there
first, and what they refuse to be: the membership service finds its row gone and records nothing,
the console logs no deletion it did not make, and a page that would save something apart from
the service cannot be registered."""

from __future__ import annotations

import ipaddress

import pytest
from django.contrib import admin
from django.contrib.admin.models import DELETION, LogEntry
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from accounts.admin_site import ServiceWritesAdmin
from accounts.roles import AdminRole
from compliance.events import EventType
from compliance.models import AuditEntry
from departments.models import Department, Membership
from departments.services import membership_remove
from tests.accounts.conftest import sign_in_with_totp


def _removals():
    return AuditEntry.objects.filter(event_type=EventType.MEMBERSHIP_REMOVE)


@pytest.fixture
def console(settings, make_admin):
    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.1/32")]
    security, device = make_admin(AdminRole.SECURITY)
    client = Client()
    sign_in_with_totp(client, security, device)
    return client


@pytest.mark.django_db
def test_removing_a_membership_removed_already_raises_and_records_nothing(personas, system_context):
    membership = Membership.objects.get(user=personas.member, department=personas.department_a)
    stale = Membership.objects.get(pk=membership.pk)
    membership_remove(membership=membership, acting_user="system")
    before = _removals().count()
    with pytest.raises(Membership.DoesNotExist):
        membership_remove(membership=stale, acting_user="system")
    assert _removals().count() == before


@pytest.mark.django_db(transaction=True)
def test_a_console_deletion_that_finds_the_row_gone_logs_nothing(personas, console, monkeypatch):
    """Confirmed on the page, then removed by another request before this one's service ran: the
    page says it no longer exists, and neither the trail nor the console's history claims it."""
    from departments import admin as departments_admin

    membership = Membership.objects.get(user=personas.member, department=personas.department_a)
    removing = departments_admin.membership_remove

    def removed_by_another_request_first(*, membership, acting_user):
        Membership.objects.filter(pk=membership.pk).delete()
        removing(membership=membership, acting_user=acting_user)

    monkeypatch.setattr(departments_admin, "membership_remove", removed_by_another_request_first)
    before = _removals().count()
    response = console.post(f"/admin/departments/membership/{membership.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert _removals().count() == before
    assert not LogEntry.objects.filter(action_flag=DELETION).exists()


@pytest.mark.django_db(transaction=True)
def test_delete_selected_skips_a_row_another_request_removed(personas, console, monkeypatch):
    from departments import admin as departments_admin

    first, second = Membership.objects.filter(department=personas.department_a).order_by("pk")[:2]
    removing = departments_admin.membership_remove

    def first_removed_elsewhere(*, membership, acting_user):
        if membership.pk == first.pk:
            Membership.objects.filter(pk=first.pk).delete()
        removing(membership=membership, acting_user=acting_user)

    monkeypatch.setattr(departments_admin, "membership_remove", first_removed_elsewhere)
    response = console.post(
        "/admin/departments/membership/",
        {"action": "delete_selected", "_selected_action": [first.pk, second.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not Membership.objects.filter(pk__in=[first.pk, second.pk]).exists()
    logged = set(LogEntry.objects.filter(action_flag=DELETION).values_list("object_id", flat=True))
    assert logged == {str(second.pk)}


@pytest.mark.parametrize(
    "extra",
    [
        {"inlines": [type("Inline", (admin.TabularInline,), {"model": Membership})]},
        {"list_editable": ("role",), "list_display": ("user", "role")},
    ],
    ids=["inlines", "list_editable"],
)
def test_a_page_that_would_save_apart_from_its_service_cannot_be_registered(extra):
    page = type("Page", (ServiceWritesAdmin,), extra)
    with pytest.raises(ImproperlyConfigured, match="outside the service's transaction"):
        page(Department, admin.AdminSite(name="probe"))


@pytest.mark.django_db
def test_a_refused_password_page_names_the_account(make_user, make_admin, settings):
    """The password page's object is its ``id`` argument: the refusal's entry names the account."""
    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.1/32")]
    auditor, device = make_admin(AdminRole.AUDIT)
    client = Client()
    sign_in_with_totp(client, auditor, device)
    erin = make_user("erin")
    response = client.get(f"/admin/accounts/user/{erin.pk}/password/")
    assert response.status_code == 403
    denial = AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).latest("sequence")
    assert (denial.object_type, denial.object_id) == ("accounts.user", str(erin.pk))
