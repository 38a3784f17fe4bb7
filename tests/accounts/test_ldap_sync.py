"""``manage.py ldap_sync`` against a real slapd: leavers disabled and kicked, memberships updated."""

from __future__ import annotations

import io

import pytest
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts.models import DirectoryGroupMapping, User
from accounts.roles import MembershipRole
from accounts.sessions import TERMINATE_MESSAGE_TYPE
from compliance.events import EventType, Outcome
from compliance.models import AuditEntry
from departments.models import Membership
from tests.accounts.conftest import message_for, websocket_of
from tests.support.slapd import USER_PASSWORD, group_dn

pytestmark = pytest.mark.django_db


@pytest.fixture
def quality_mapping(personas, system_context):
    DirectoryGroupMapping.objects.create(
        group_dn=group_dn("ivan-group"), department=personas.department_b, role=MembershipRole.MEMBER
    )
    DirectoryGroupMapping.objects.create(
        group_dn=group_dn("finance-staff"), department=personas.department_a, role=MembershipRole.MEMBER
    )
    return personas


def signed_in_client(client_class, username):
    client = client_class()
    response = client.post(reverse("login"), {"username": username, "password": USER_PASSWORD})
    assert response.status_code == 302
    return client


def test_sync_disables_leavers_ends_their_sessions_and_closes_websockets(
    client, directory, quality_mapping, channel_layer, django_capture_on_commit_callbacks
):
    from django.test import Client

    ivan_client = signed_in_client(Client, "ivan")
    jack_client = signed_in_client(Client, "jack")
    dora_client = signed_in_client(Client, "dora")
    ivan, jack, dora = (User.objects.get(username=name) for name in ("ivan", "jack", "dora"))
    ivan_socket, jack_socket, dora_socket = (websocket_of(channel_layer, u) for u in (ivan, jack, dora))

    directory.user_delete("ivan")  # left the organisation
    directory.group_remove_member("ivan-group", "jack")  # moved to a team with no mapped group
    try:
        with django_capture_on_commit_callbacks(execute=True):
            call_command("ldap_sync", stdout=io.StringIO())
    finally:
        directory.group_add_member("ivan-group", "jack")
        directory.user_restore("ivan")

    ivan.refresh_from_db()
    jack.refresh_from_db()
    dora.refresh_from_db()
    assert not ivan.is_active and not jack.is_active and dora.is_active
    assert not Membership.objects.filter(user=jack).exists()  # its directory membership went too
    # Their sessions are gone from the store: the next request is anonymous.
    assert ivan_client.get(reverse("departments:picker")).status_code == 302
    assert jack_client.get(reverse("departments:picker")).status_code == 302
    assert dora_client.get(reverse("departments:picker")).status_code == 200
    assert not Session.objects.filter(session_key=ivan_client.session.session_key).exists()
    # Their websockets were told to close; dora's were not.
    assert message_for(channel_layer, ivan_socket)["type"] == TERMINATE_MESSAGE_TYPE
    assert message_for(channel_layer, jack_socket)["type"] == TERMINATE_MESSAGE_TYPE
    assert message_for(channel_layer, dora_socket, timeout=0.3) is None
    disabled = AuditEntry.objects.filter(event_type=EventType.USER_DISABLE).order_by("sequence")
    assert [(e.object_repr, e.actor_name) for e in disabled] == [("ivan", "system"), ("jack", "system")]
    sync = AuditEntry.objects.filter(event_type=EventType.DIRECTORY_SYNC).get()
    assert sync.outcome == Outcome.SUCCESS and sorted(sync.details["disabled"]) == ["ivan", "jack"]


def test_sync_stops_without_disabling_anyone_when_the_directory_is_down(client, directory, quality_mapping, settings):
    signed_in_client(type(client), "dora")
    settings.AUTH_LDAP_SERVER_URI = "ldap://127.0.0.1:9"  # nothing listens there
    with pytest.raises(CommandError, match="could not be read"):
        call_command("ldap_sync")
    assert User.objects.get(username="dora").is_active
    assert Membership.objects.filter(user__username="dora").exists()
    entry = AuditEntry.objects.filter(event_type=EventType.DIRECTORY_SYNC).get()
    assert entry.outcome == Outcome.FAILURE


def test_sync_seeds_mappings_from_settings_once(directory, personas, settings, system_context):
    settings.LDAP_GROUP_MAPPINGS = [{"group": group_dn("Quality-Staff"), "department": "quality", "role": "member"}]
    call_command("ldap_sync", "--seed-mappings", stdout=io.StringIO())
    call_command("ldap_sync", "--seed-mappings", stdout=io.StringIO())
    mapping = DirectoryGroupMapping.objects.get()
    assert mapping.group_dn == group_dn("quality-staff")
    assert AuditEntry.objects.filter(event_type=EventType.GROUP_MAPPING_CHANGE).count() == 1


def test_sync_refuses_without_ldap(settings, db):
    settings.LDAP_ENABLED = False
    with pytest.raises(CommandError, match="not configured"):
        call_command("ldap_sync")
