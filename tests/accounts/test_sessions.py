"""Sessions (IA-2, RI-1): key rotation, idle and absolute timeouts, and ending every session and
websocket of a user on logout, disable, role change, demotion or membership loss."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from accounts.models import UserSession
from accounts.roles import MembershipRole
from accounts.sessions import (
    SESSION_LAST_SEEN_KEY,
    SESSION_LOGIN_AT_KEY,
    TERMINATE_MESSAGE_TYPE,
    user_group_name,
)
from compliance.events import EventType
from compliance.models import AuditEntry
from departments.models import Membership
from departments.services import membership_change_role, membership_remove
from tests.accounts.conftest import TEST_PASSWORD, message_for, websocket_of

pytestmark = pytest.mark.django_db


def sign_in(username: str) -> Client:
    client = Client()
    response = client.post(reverse("login"), {"username": username, "password": TEST_PASSWORD})
    assert response.status_code == 302
    return client


def is_signed_in(client: Client) -> bool:
    return client.get(reverse("departments:picker")).status_code == 200


def age_session(client: Client, **seconds_ago: float) -> None:
    session = client.session
    for key, ago in seconds_ago.items():
        session[key] = time.time() - ago
    session.save()


def test_group_name_is_per_user():
    assert user_group_name(42) == "user.42"


def test_session_key_rotates_at_login(client, personas):
    anonymous_session = client.session
    anonymous_session["probe"] = 1
    anonymous_session.save()
    before = anonymous_session.session_key
    client.post(reverse("login"), {"username": "bob", "password": TEST_PASSWORD})
    after = client.session.session_key
    assert after != before
    assert not Session.objects.filter(session_key=before).exists()
    assert UserSession.objects.filter(user=personas.member, session_key=after).exists()


def test_idle_session_ends_and_is_audited(personas):
    client = sign_in("bob")
    key = client.session.session_key
    age_session(client, **{SESSION_LAST_SEEN_KEY: settings.SESSION_IDLE_SECONDS + 5})
    response = client.get(reverse("departments:picker"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert not Session.objects.filter(session_key=key).exists()
    assert not UserSession.objects.filter(session_key=key).exists()
    entry = AuditEntry.objects.filter(event_type=EventType.SESSION_EXPIRED).get()
    assert entry.details == {"reason": "idle"} and entry.actor_name == "bob"


def test_active_session_survives_and_is_refreshed(personas):
    client = sign_in("bob")
    age_session(client, **{SESSION_LAST_SEEN_KEY: settings.SESSION_IDLE_SECONDS - 60})
    assert is_signed_in(client)
    assert time.time() - client.session[SESSION_LAST_SEEN_KEY] < 5  # activity moved the idle clock


def test_absolute_timeout_ends_even_an_active_session(personas):
    client = sign_in("bob")
    age_session(client, **{SESSION_LOGIN_AT_KEY: settings.SESSION_COOKIE_AGE + 5, SESSION_LAST_SEEN_KEY: 1})
    assert not is_signed_in(client)
    assert AuditEntry.objects.filter(event_type=EventType.SESSION_EXPIRED).get().details == {"reason": "absolute"}


def test_logout_deletes_the_session_and_closes_websockets(personas, channel_layer, django_capture_on_commit_callbacks):
    client = sign_in("bob")
    key = client.session.session_key
    socket = websocket_of(channel_layer, personas.member)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("logout"))
    assert not Session.objects.filter(session_key=key).exists()
    assert not UserSession.objects.filter(session_key=key).exists()
    message = message_for(channel_layer, socket)
    assert message["type"] == TERMINATE_MESSAGE_TYPE and message["reason"] == "logout"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("disable", "disabled"),
        ("admin_role", "role_change"),
        ("demote", "demotion"),
        ("remove_membership", "membership_removed"),
    ],
)
def test_account_changes_end_every_session_and_websocket(
    personas, make_user, channel_layer, django_capture_on_commit_callbacks, system_context, change, reason
):
    # The department administrator of finance; an administrator role can only be given to an
    # account without department access (SM-1..3), so that change is made to a fresh account.
    alice = make_user("dana") if change == "admin_role" else personas.admin
    laptop, phone = sign_in(alice.username), sign_in(alice.username)
    bystander = sign_in("bob")
    alice_socket, bob_socket = websocket_of(channel_layer, alice), websocket_of(channel_layer, personas.member)
    with django_capture_on_commit_callbacks(execute=True):
        if change == "disable":
            alice.is_active = False
            alice.save()
        elif change == "admin_role":
            alice.admin_role = "audit"
            alice.save()
        elif change == "demote":
            membership_change_role(membership=Membership.objects.get(user=alice), role=MembershipRole.MEMBER)
        else:
            membership_remove(membership=Membership.objects.get(user=alice))
    assert not is_signed_in(laptop) and not is_signed_in(phone)
    assert is_signed_in(bystander)
    assert not UserSession.objects.filter(user=alice).exists()
    assert message_for(channel_layer, alice_socket) == {"type": TERMINATE_MESSAGE_TYPE, "reason": reason}
    assert message_for(channel_layer, bob_socket, timeout=0.3) is None


def test_saving_unrelated_fields_keeps_sessions(personas):
    client = sign_in("bob")
    personas.member.first_name = "Robert"
    personas.member.save()
    assert is_signed_in(client)


def test_password_change_ends_the_other_sessions_only(personas):
    here, elsewhere = sign_in("bob"), sign_in("bob")
    response = here.post(
        reverse("password-change"),
        {"old_password": TEST_PASSWORD, "new_password1": "Fresh-Horse-42", "new_password2": "Fresh-Horse-42"},
    )
    assert response.status_code == 302
    assert is_signed_in(here) and not is_signed_in(elsewhere)
