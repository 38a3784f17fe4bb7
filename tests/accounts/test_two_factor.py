"""TOTP and recovery codes (IA-4): mandatory for administrators, optional for members."""

from __future__ import annotations

import time

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.login import PENDING_MAX_SECONDS, PENDING_SESSION_KEY
from accounts.roles import AdminRole
from accounts.views import RECOVERY_CODES_SESSION_KEY
from compliance.events import EventType, Outcome
from compliance.models import AuditEntry
from tests.accounts.conftest import TEST_PASSWORD, totp_next, totp_now

pytestmark = pytest.mark.django_db


def password_step(client, username, address="10.0.0.20"):
    return client.post(reverse("login"), {"username": username, "password": TEST_PASSWORD}, REMOTE_ADDR=address)


def is_signed_in(client) -> bool:
    return client.get(reverse("departments:picker")).status_code == 200


def test_administrator_without_authenticator_must_enrol_before_signing_in(client, make_user):
    make_user("secadmin", admin_role=AdminRole.SECURITY)
    response = password_step(client, "secadmin")
    assert response["Location"] == reverse("login-enrol")
    assert not is_signed_in(client)  # the password alone authenticates nothing

    page = client.get(reverse("login-enrol"))
    assert page.status_code == 200
    svg = page.context["qr_svg"]
    assert svg.startswith("<svg") and "<path" in svg  # drawn locally, no image from anywhere
    assert "http" not in svg.split("xmlns")[0]
    device = TOTPDevice.objects.get(user__username="secadmin", confirmed=False)

    wrong = client.post(reverse("login-enrol"), {"token": "000000" if totp_now(device) != "000000" else "111111"})
    assert wrong.status_code == 200 and not is_signed_in(client)

    response = client.post(reverse("login-enrol"), {"token": totp_now(device)})
    assert response["Location"] == reverse("recovery-codes")
    codes_page = client.get(reverse("recovery-codes"))
    codes = codes_page.context["codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert client.get(reverse("recovery-codes")).status_code == 302  # shown once only
    device.refresh_from_db()
    assert device.confirmed
    assert client.session.get("otp_device_id") == device.persistent_id  # the session is verified
    enrolments = AuditEntry.objects.filter(event_type=EventType.TOTP_ENROL).order_by("sequence")
    assert [e.outcome for e in enrolments] == [Outcome.FAILURE, Outcome.SUCCESS]


def test_enrolled_administrator_needs_the_code(client, make_admin):
    user, device = make_admin(AdminRole.AUDIT)
    assert password_step(client, user.username)["Location"] == reverse("login-verify")
    assert not is_signed_in(client)
    response = client.post(reverse("login-verify"), {"token": totp_now(device)})
    assert response.status_code == 302 and is_signed_in(client)
    entry = AuditEntry.objects.filter(event_type=EventType.TOTP_VERIFY).get()
    assert entry.outcome == Outcome.SUCCESS and entry.actor_name == user.username


def test_wrong_codes_count_toward_the_lockout(client, make_admin):
    user, device = make_admin(AdminRole.SYSTEM)
    password_step(client, user.username)
    bad = "000000" if totp_now(device) != "000000" else "111111"
    for _ in range(4):
        assert client.post(reverse("login-verify"), {"token": bad}).status_code == 200
    response = client.post(reverse("login-verify"), {"token": bad})
    assert response["Location"] == reverse("login")  # locked: the pending sign-in is gone
    assert PENDING_SESSION_KEY not in client.session
    # Even the password and a right code no longer get in.
    assert password_step(client, user.username, address="10.0.0.21").status_code == 200
    assert any(e.details.get("kind") == "account" for e in AuditEntry.objects.filter(event_type=EventType.LOCKOUT))


def test_recovery_code_signs_in_once(client, make_admin):
    from accounts.two_factor import recovery_codes_regenerate

    user, _ = make_admin(AdminRole.SECURITY)
    code = recovery_codes_regenerate(user=user)[0]
    password_step(client, user.username)
    assert client.post(reverse("login-verify"), {"token": code}).status_code == 302
    assert is_signed_in(client)
    assert not StaticToken.objects.filter(token=code).exists()
    other = Client()
    password_step(other, user.username, address="10.0.0.22")
    assert other.post(reverse("login-verify"), {"token": code}).status_code == 200  # spent


def test_pending_sign_in_expires(client, make_admin):
    user, device = make_admin(AdminRole.AUDIT)
    password_step(client, user.username)
    session = client.session
    session[PENDING_SESSION_KEY] = {**session[PENDING_SESSION_KEY], "at": time.time() - PENDING_MAX_SECONDS - 1}
    session.save()
    response = client.post(reverse("login-verify"), {"token": totp_now(device)})
    assert response["Location"] == reverse("login") and not is_signed_in(client)


def test_member_may_sign_in_without_then_enrol_and_then_needs_it(client, personas):
    # Signed in at once, straight into bob's one department (no picker to click through).
    assert password_step(client, "bob")["Location"] == reverse("chat:home", args=["finance"])
    page = client.get(reverse("two-factor"))
    assert page.status_code == 200 and not page.context["enrolled"]
    device = TOTPDevice.objects.get(user=personas.member, confirmed=False)
    response = client.post(reverse("two-factor"), {"action": "enrol", "token": totp_now(device)})
    assert response["Location"] == reverse("recovery-codes")
    recovery_codes = client.session[RECOVERY_CODES_SESSION_KEY]
    client.post(reverse("logout"))

    assert password_step(client, "bob")["Location"] == reverse("login-verify")
    assert client.post(reverse("login-verify"), {"token": totp_next(device)}).status_code == 302
    assert is_signed_in(client)

    # A member may switch it off again, with a current code (a step-up: an open session alone
    # does not do); the authenticator's next code was used to sign in, so a recovery code here.
    client.post(reverse("two-factor"), {"action": "remove"})
    assert TOTPDevice.objects.filter(user=personas.member).exists()
    client.post(reverse("two-factor"), {"action": "remove", "token": "12345678"})
    assert TOTPDevice.objects.filter(user=personas.member).exists()
    client.post(reverse("two-factor"), {"action": "remove", "token": recovery_codes[0]})
    assert not TOTPDevice.objects.filter(user=personas.member).exists()


def test_administrator_cannot_switch_two_factor_off(client, make_admin):
    user, device = make_admin(AdminRole.SECURITY)
    password_step(client, user.username)
    client.post(reverse("login-verify"), {"token": totp_now(device)})
    client.post(reverse("two-factor"), {"action": "remove"})
    assert TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def test_api_login_takes_the_code_in_the_same_request(client, make_admin):
    user, device = make_admin(AdminRole.AUDIT)
    url = reverse("api-login")
    body = {"username": user.username, "password": TEST_PASSWORD}
    response = client.post(url, body, content_type="application/json")
    assert response.status_code == 401 and response.json()["error"] == "second_factor_required"
    response = client.post(url, {**body, "otp": totp_now(device)}, content_type="application/json")
    assert response.status_code == 200
    assert client.session.get("otp_device_id") == device.persistent_id


def test_renewing_recovery_codes_is_audited(make_user, system_context):
    from accounts.two_factor import recovery_codes_renew

    user = make_user("renewer")
    codes = recovery_codes_renew(user=user)
    assert len(codes) == 10
    entry = AuditEntry.objects.filter(event_type=EventType.TOTP_ENROL, actor_name="renewer").get()
    assert entry.details == {"action": "recovery codes renewed"}


# --- resetting someone's second factor (the three administrators kept apart) -----------------


def _admin_request(user):
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.contrib.sessions.backends.db import SessionStore
    from django.test import RequestFactory

    request = RequestFactory().post("/admin/", REMOTE_ADDR="127.0.0.1")
    request.user, request.session = user, SessionStore()
    request.source_ip = "127.0.0.1"  # as RequestContextMiddleware sets it
    request._messages = FallbackStorage(request)
    return request


def _reset_as(acting_user, model, action: str, *targets):
    from django.contrib import admin

    model_admin = admin.site._registry[model]
    getattr(model_admin, action)(_admin_request(acting_user), model.objects.filter(pk__in=[t.pk for t in targets]))


def test_the_system_administrator_resets_members_but_not_administrators(make_admin, personas, system_context):
    from accounts.models import User

    system, _device = make_admin(AdminRole.SYSTEM)
    auditor, auditor_device = make_admin(AdminRole.AUDIT)
    TOTPDevice.objects.create(user=personas.member, name="authenticator", confirmed=True)
    _reset_as(system, User, "reset_two_factor", personas.member, auditor)
    assert not TOTPDevice.objects.filter(user=personas.member).exists()
    # The audit administrator's factor stays: otherwise the system administrator could reset it
    # and enrol one of their own. The refusal is on record.
    assert TOTPDevice.objects.filter(pk=auditor_device.pk).exists()
    denial = AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED, object_id=str(auditor.pk)).get()
    assert denial.outcome == Outcome.DENIED and denial.actor_name == system.username
    assert "security administrator" in denial.details["reason"]


def test_the_security_administrator_resets_another_administrators_factor_not_their_own(make_admin, system_context):
    from accounts.models import AdministratorRole

    security, security_device = make_admin(AdminRole.SECURITY)
    auditor, auditor_device = make_admin(AdminRole.AUDIT)
    _reset_as(security, AdministratorRole, "reset_administrator_two_factor", auditor, security)
    assert not TOTPDevice.objects.filter(pk=auditor_device.pk).exists()
    assert TOTPDevice.objects.filter(pk=security_device.pk).exists()
    assert AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED, object_id=str(security.pk)).exists()


def test_new_recovery_codes_need_a_current_code(client, make_admin, system_context):
    user, device = make_admin(AdminRole.SECURITY)
    password_step(client, user.username)
    client.post(reverse("login-verify"), {"token": totp_now(device)})
    old_codes = set(StaticToken.objects.filter(device__user=user).values_list("token", flat=True))
    response = client.post(reverse("two-factor"), {"action": "regenerate"})
    assert response.status_code == 200 and response.context["form"].errors
    assert set(StaticToken.objects.filter(device__user=user).values_list("token", flat=True)) == old_codes
    response = client.post(reverse("two-factor"), {"action": "regenerate", "token": totp_next(device)})
    assert response["Location"] == reverse("recovery-codes")
    assert set(StaticToken.objects.filter(device__user=user).values_list("token", flat=True)).isdisjoint(old_codes)


def test_guessing_step_up_codes_locks_the_account_and_ends_the_session(client, make_admin, system_context):
    user, device = make_admin(AdminRole.AUDIT)
    password_step(client, user.username)
    client.post(reverse("login-verify"), {"token": totp_now(device)})
    bad = "000000" if totp_next(device) != "000000" else "111111"
    for _ in range(4):
        assert client.post(reverse("two-factor"), {"action": "regenerate", "token": bad}).status_code == 200
    response = client.post(reverse("two-factor"), {"action": "regenerate", "token": bad})
    assert response["Location"] == reverse("login")
    assert not is_signed_in(client)
    assert AuditEntry.objects.filter(event_type=EventType.LOCKOUT).exists()


# --- second-factor guesses lock the account, whichever sign-in or prompt they come through -------


def _wrong_code(device, kind: str) -> str:
    if kind == "recovery":
        return "notarecoverycode"
    return "000000" if "000000" not in (totp_now(device), totp_next(device)) else "111111"


@pytest.mark.parametrize("kind", ["totp", "recovery"])
def test_code_guesses_spread_over_sign_ins_and_addresses_lock_the_account(make_admin, kind):
    """A right password does not reset the count: five wrong codes over five sign-ins lock."""
    from accounts.two_factor import recovery_codes_regenerate

    user, device = make_admin(AdminRole.SYSTEM)
    recovery_codes_regenerate(user=user)
    bad = _wrong_code(device, kind)
    for i in range(5):
        guesser = Client()
        address = f"10.30.{i}.1"
        assert password_step(guesser, user.username, address=address)["Location"] == reverse("login-verify")
        response = guesser.post(reverse("login-verify"), {"token": bad}, REMOTE_ADDR=address)
    assert response["Location"] == reverse("login")  # the fifth guess locked the account
    owner = Client()
    assert password_step(owner, user.username, address="10.30.9.1").status_code == 200  # refused
    assert not is_signed_in(owner)
    lock = [e for e in AuditEntry.objects.filter(event_type=EventType.LOCKOUT) if e.details["kind"] == "account"]
    assert [e.details["last_reason"] for e in lock] == ["totp"]


def test_api_login_code_guesses_lock_the_account(client, make_admin):
    user, device = make_admin(AdminRole.AUDIT)
    url = reverse("api-login")
    body = {"username": user.username, "password": TEST_PASSWORD, "otp": _wrong_code(device, "totp")}
    answers = [
        client.post(url, body, content_type="application/json", REMOTE_ADDR=f"10.31.{i}.1").json()["error"]
        for i in range(5)
    ]
    assert answers == ["second_factor_required"] * 4 + ["invalid"]
    response = client.post(url, {**body, "otp": totp_now(device)}, content_type="application/json")
    assert response.status_code == 401 and response.json()["error"] == "invalid"
    assert "_auth_user_id" not in client.session


def test_step_up_and_sign_in_guesses_add_up(client, make_admin, system_context):
    """Wrong codes at a signed-in session's prompt and at sign-in count toward one lock."""
    user, device = make_admin(AdminRole.SECURITY)
    password_step(client, user.username)
    client.post(reverse("login-verify"), {"token": totp_now(device)})
    bad = _wrong_code(device, "totp")
    for _ in range(3):
        assert client.post(reverse("two-factor"), {"action": "regenerate", "token": bad}).status_code == 200
    guesser = Client()
    for i in range(2):
        assert password_step(guesser, user.username, address=f"10.32.{i}.1")["Location"] == reverse("login-verify")
        response = guesser.post(reverse("login-verify"), {"token": bad}, REMOTE_ADDR=f"10.32.{i}.1")
    assert response["Location"] == reverse("login")
    assert password_step(Client(), user.username, address="10.32.9.1").status_code == 200  # locked


def test_a_locked_account_gets_no_step_up_even_with_the_right_code(client, make_admin, system_context):
    from accounts.models import LoginThrottle

    user, device = make_admin(AdminRole.AUDIT)
    password_step(client, user.username)
    client.post(reverse("login-verify"), {"token": totp_now(device)})
    old_codes = set(StaticToken.objects.filter(device__user=user).values_list("token", flat=True))
    LoginThrottle.objects.create(kind="account", key=user.username, failures=5, locked_until="2999-01-01T00:00:00Z")
    response = client.post(reverse("two-factor"), {"action": "regenerate", "token": totp_next(device)})
    assert response["Location"] == reverse("login") and not is_signed_in(client)
    assert set(StaticToken.objects.filter(device__user=user).values_list("token", flat=True)) == old_codes
    refusal = AuditEntry.objects.filter(event_type=EventType.LOGIN_FAILED).latest("sequence")
    assert refusal.details["reason"] == "locked" and refusal.details["step"] == "two-factor settings"
