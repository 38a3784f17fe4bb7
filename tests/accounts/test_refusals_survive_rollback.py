"""A refusal's ``access.denied`` entry is committed on its own: the refused action, rolled back or
never begun, cannot take it along. ``refusal_record`` refuses to run inside another transaction
(where a rollback would take its entry), and a service's refusal inside the console's transaction
ends as a recorded refusal, not as an error with no entry.
"""

from __future__ import annotations

import ipaddress

import pytest
from django.db import transaction
from django.test import Client

from accounts.permissions import Action, RefusedForbidden, RefusedNotFound, refusal_record
from accounts.roles import AdminRole
from compliance.events import EventType
from compliance.models import AuditEntry
from departments.models import Membership
from departments.services import membership_add
from departments.tenancy import department_scope
from tests.accounts.conftest import sign_in_with_totp


def _denials():
    return AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED)


@pytest.mark.django_db
def test_recording_a_refusal_inside_an_open_transaction_fails_loudly():
    before = _denials().count()
    with pytest.raises(RuntimeError, match="durable"):
        with transaction.atomic():
            refusal_record(action=Action.CHAT, reason="inside the refused action's transaction")
    assert _denials().count() == before  # nothing written that a rollback could take away


@pytest.fixture
def chat_of_bob(personas, make_user, system_context):
    """Bob's conversation in finance, and Dave, another member of finance."""
    from inference.chat.services import conversation_create

    dave = make_user("dave")
    membership_add(user=dave, department=personas.department_a, acting_user="system")
    conversation = conversation_create(
        department=personas.department_a, owner=personas.member, title="Budget 2026", acting_user=personas.member
    )
    return conversation, dave


def _conversation(conversation):
    from inference.chat.models import Conversation

    with department_scope(conversation.department_id):
        return Conversation.objects.filter(pk=conversation.pk).first()


@pytest.mark.django_db(transaction=True)
def test_a_non_owners_rename_and_delete_are_refused_and_the_refusal_stays(personas, chat_of_bob):
    from inference.chat.services import conversation_delete, conversation_rename

    conversation, dave = chat_of_bob
    client = Client()
    client.force_login(dave)
    base = f"/d/finance/chat/conversations/{conversation.pk}"
    attempts = [
        lambda: client.post(f"{base}/rename/", {"title": "Dave's now"}),
        lambda: client.post(f"{base}/delete/"),
    ]
    for attempt in attempts:  # through the views
        before = _denials().count()
        assert attempt().status_code == 404
        assert _denials().count() == before + 1
    for service, kwargs in ((conversation_rename, {"title": "Dave's now"}), (conversation_delete, {})):
        before = _denials().count()
        with pytest.raises(RefusedNotFound):
            service(conversation=_conversation(conversation), acting_user=dave, **kwargs)
        assert _denials().count() == before + 1
    refusals = _denials().filter(object_id=str(conversation.pk), actor_name="dave")
    assert [entry.details["action"] for entry in refusals] == [Action.CONVERSATION_OWN.value] * 4
    assert _conversation(conversation).title == "Budget 2026"


@pytest.mark.django_db(transaction=True)
def test_a_refused_task_template_change_is_recorded_and_changes_nothing(personas, system_context):
    from inference.extraction.services import templates_builtin_ensure
    from inference.extraction.templates import task_template_delete, task_template_update
    from inference.models import TaskTemplate

    templates_builtin_ensure(department=personas.department_a)
    with department_scope(personas.department_a):
        template = TaskTemplate.objects.get(department=personas.department_a, slug="vat-invoice")
    name = template.name
    client = Client()
    client.force_login(personas.member)  # a member of finance, not its administrator
    before = _denials().count()
    response = client.post(f"/d/finance/chat/templates/{template.pk}/", {"name": "Bob's invoices"})
    assert response.status_code == 403
    assert _denials().count() == before + 1
    for service, kwargs in ((task_template_update, {"name": "Bob's invoices"}), (task_template_delete, {})):
        before = _denials().count()
        with pytest.raises(RefusedForbidden):
            service(template=template, acting_user=personas.member, **kwargs)
        assert _denials().count() == before + 1
    refusals = [entry.details["action"] for entry in _denials().filter(actor_name="bob")]
    assert refusals == [Action.TASK_TEMPLATE_MANAGE.value] * 3
    with department_scope(personas.department_a):
        template.refresh_from_db()
    assert template.name == name


@pytest.mark.django_db(transaction=True)
def test_a_service_refusal_inside_the_console_is_a_recorded_refusal(personas, make_user, make_admin, settings):
    """The form's check passed; before the membership is written the account became an
    administrator (another administrator's change, in between): the membership service refuses
    inside the console's page, and that ends as a 403 with its entry, not as a server error."""
    from departments.admin import MembershipAdmin

    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.1/32")]
    security, device = make_admin(AdminRole.SECURITY)
    console = Client()
    sign_in_with_totp(console, security, device)
    erin = make_user("erin")
    validated = MembershipAdmin.save_form

    def validated_then_promoted(model_admin, request, form, change):
        membership = validated(model_admin, request, form, change)  # the form passed every check
        type(erin).objects.filter(pk=erin.pk).update(admin_role=AdminRole.SYSTEM)
        membership.user.admin_role = AdminRole.SYSTEM
        return membership

    MembershipAdmin.save_form = validated_then_promoted
    try:
        before = _denials().count()
        response = console.post(
            "/admin/departments/membership/add/",
            {"user": erin.pk, "department": personas.department_a.pk, "role": "member"},
        )
    finally:
        MembershipAdmin.save_form = validated
    assert response.status_code == 403, response.context["adminform"].form.errors
    assert _denials().count() == before + 1
    denial = _denials().latest("sequence")
    assert denial.details["action"] == Action.DEPARTMENT_ACCESS_HOLD.value
    assert (denial.actor_name, denial.object_repr) == (security.username, "erin")
    assert not Membership.objects.filter(user=erin).exists()


@pytest.mark.django_db(transaction=True)
def test_a_console_deletion_refused_by_its_service_is_recorded_and_deletes_nothing(personas, make_admin, settings):
    """The confirmation page's checks passed; before the deletion the administrator lost the
    grant (demoted, in between): the service refuses, the page answers 403 with the refusal's
    entry, the membership stays, and the console's history claims no deletion."""
    from django.contrib.admin.models import DELETION, LogEntry

    from departments.admin import MembershipAdmin

    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.1/32")]
    security, device = make_admin(AdminRole.SECURITY)
    console = Client()
    sign_in_with_totp(console, security, device)
    membership = Membership.objects.get(user=personas.member, department=personas.department_a)
    path = f"/admin/departments/membership/{membership.pk}/delete/"
    checked = MembershipAdmin.get_deleted_objects

    def checked_then_demoted(model_admin, objs, request):
        deleted = checked(model_admin, objs, request)
        request.user.admin_role = AdminRole.AUDIT
        return deleted

    MembershipAdmin.get_deleted_objects = checked_then_demoted
    try:
        before = _denials().count()
        response = console.post(path, {"post": "yes"})
    finally:
        MembershipAdmin.get_deleted_objects = checked
    assert response.status_code == 403
    assert _denials().count() == before + 1
    denial = _denials().latest("sequence")
    assert (denial.details["action"], denial.actor_name) == (Action.MEMBERSHIP_MANAGE.value, security.username)
    assert Membership.objects.filter(pk=membership.pk).exists()
    deletions = LogEntry.objects.filter(action_flag=DELETION, object_id=str(membership.pk))
    assert not deletions.exists()

    # Not refused: the deletion is made, and then it is in the console's history.
    assert console.post(path, {"post": "yes"}).status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert deletions.get().user_id == security.pk


@pytest.mark.django_db(transaction=True)
def test_delete_selected_logs_only_what_it_deleted_and_stops_at_a_refusal(personas, make_admin, settings, monkeypatch):
    """The changelist's "delete selected": the administrator is demoted after one deletion (in
    between): the other is refused and recorded, the one made stays deleted and is the only
    deletion in the console's history."""
    from django.contrib.admin.models import DELETION, LogEntry

    from departments import admin as departments_admin

    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.1/32")]
    security, device = make_admin(AdminRole.SECURITY)
    console = Client()
    sign_in_with_totp(console, security, device)
    first, second = Membership.objects.filter(department=personas.department_a).order_by("pk")[:2]
    removing = departments_admin.membership_remove

    def removed_then_demoted(*, membership, acting_user):
        removing(membership=membership, acting_user=acting_user)
        acting_user.admin_role = AdminRole.AUDIT

    monkeypatch.setattr(departments_admin, "membership_remove", removed_then_demoted)
    before = _denials().count()
    response = console.post(
        "/admin/departments/membership/",
        {"action": "delete_selected", "_selected_action": [first.pk, second.pk], "post": "yes"},
    )
    assert response.status_code == 403
    assert _denials().count() == before + 1
    assert _denials().latest("sequence").details["action"] == Action.MEMBERSHIP_MANAGE.value
    left = set(Membership.objects.filter(pk__in=[first.pk, second.pk]).values_list("pk", flat=True))
    assert len(left) == 1, left  # one deleted (the changelist's order), one refused
    (deleted,) = {first.pk, second.pk} - left
    logged = set(LogEntry.objects.filter(action_flag=DELETION).values_list("object_id", flat=True))
    assert logged == {str(deleted)}
