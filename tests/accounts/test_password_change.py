"""Changing one's own password (IA-1): a step-up with the current password, and a current code
for administrators; wrong answers are refused, audited and count toward the lock."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import LoginThrottle
from accounts.roles import AdminRole
from accounts.views import CURRENT_PASSWORD_INVALID, CURRENT_PASSWORD_OR_CODE_INVALID
from compliance.events import EventType, Outcome
from compliance.models import AuditEntry
from tests.accounts.conftest import TEST_PASSWORD, sign_in_with_totp, totp_next, totp_now

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "Fresh-Horse-42"


def signed_in(username: str, address: str = "10.40.0.1") -> Client:
    client = Client(REMOTE_ADDR=address)
    assert client.post(reverse("login"), {"username": username, "password": TEST_PASSWORD}).status_code == 302
    return client


def change(client: Client, current: str | None, **extra):
    data = {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD, **extra}
    if current is not None:
        data["old_password"] = current
    return client.post(reverse("password-change"), data)


def password_is(user, raw: str) -> bool:
    user.refresh_from_db()
    return user.check_password(raw)


def test_the_current_password_is_required(personas):
    client = signed_in("bob")
    response = change(client, None)
    assert response.status_code == 200 and response.context["form"].errors["old_password"]
    assert password_is(personas.member, TEST_PASSWORD)


def test_a_wrong_current_password_is_refused_audited_and_counted(personas):
    client = signed_in("bob")
    response = change(client, "Wrong-pass-1")
    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [str(CURRENT_PASSWORD_INVALID)]
    assert password_is(personas.member, TEST_PASSWORD)
    refusal = AuditEntry.objects.filter(event_type=EventType.LOGIN_FAILED).latest("sequence")
    assert refusal.outcome == Outcome.FAILURE and refusal.actor_name == "bob"
    assert refusal.details == {"username": "bob", "reason": "current password", "step": "password change"}
    assert LoginThrottle.objects.get(kind="account", key="bob").failures == 1
    assert not AuditEntry.objects.filter(event_type=EventType.PASSWORD_CHANGE).exists()


def test_the_right_current_password_changes_it(personas):
    client = signed_in("bob")
    assert change(client, TEST_PASSWORD).status_code == 302
    assert password_is(personas.member, NEW_PASSWORD)
    assert AuditEntry.objects.filter(event_type=EventType.PASSWORD_CHANGE, actor_name="bob").exists()


def test_guessing_the_current_password_locks_the_account_and_ends_its_sessions(personas):
    thief, owner = signed_in("bob"), signed_in("bob", address="10.40.0.2")
    for _ in range(4):
        assert change(thief, "Wrong-pass-1").status_code == 200
    response = change(thief, "Wrong-pass-1")
    assert response["Location"] == reverse("login")
    for client in (thief, owner):
        assert client.get(reverse("departments:picker")).status_code == 302  # signed out
    assert password_is(personas.member, TEST_PASSWORD)
    assert any(e.details["key"] == "bob" for e in AuditEntry.objects.filter(event_type=EventType.LOCKOUT))
    # The account is locked: even the right password does not sign in now.
    response = Client().post(reverse("login"), {"username": "bob", "password": TEST_PASSWORD})
    assert response.status_code == 200


def test_sign_in_failures_and_wrong_current_passwords_add_up(personas):
    for i in range(3):
        Client().post(reverse("login"), {"username": "bob", "password": "Wrong-pass-1"}, REMOTE_ADDR=f"10.41.{i}.1")
    client = signed_in("bob")  # a completed sign-in: the counter starts again
    for _ in range(4):
        change(client, "Wrong-pass-1")
    assert LoginThrottle.objects.get(kind="account", key="bob").failures == 4


@pytest.mark.parametrize("role", [AdminRole.SYSTEM, AdminRole.SECURITY, AdminRole.AUDIT])
def test_administrators_also_need_a_current_code(make_admin, role):
    user, device = make_admin(role)
    client = Client()
    sign_in_with_totp(client, user, device)
    response = change(client, TEST_PASSWORD)  # no code
    assert response.status_code == 200 and response.context["form"].errors["token"]
    bad = "000000" if "000000" not in (totp_now(device), totp_next(device)) else "111111"
    response = change(client, TEST_PASSWORD, token=bad)
    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [str(CURRENT_PASSWORD_OR_CODE_INVALID)]
    assert password_is(user, TEST_PASSWORD)
    verify = AuditEntry.objects.filter(event_type=EventType.TOTP_VERIFY).latest("sequence")
    assert verify.outcome == Outcome.FAILURE and verify.actor_name == user.username
    assert LoginThrottle.objects.get(kind="account", key=user.username).failures == 1
    # A wrong password with the right code: refused too (the code is not even looked at).
    response = change(client, "Wrong-pass-1", token=totp_next(device))
    assert response.status_code == 200 and password_is(user, TEST_PASSWORD)
    assert change(client, TEST_PASSWORD, token=totp_next(device)).status_code == 302
    assert password_is(user, NEW_PASSWORD)


def test_members_are_not_asked_for_a_code(personas):
    client = signed_in("bob")
    response = client.get(reverse("password-change"))
    assert "token" not in response.context["form"].fields
    assert 'name="old_password"' in response.content.decode()
