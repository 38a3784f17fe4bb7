"""Login failure handling (IA-2): per account and per address, in the database, uniform refusals."""

from __future__ import annotations

import statistics
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.lockout import lock_release
from accounts.login import LOGIN_REFUSED
from accounts.models import LoginThrottle
from compliance.events import EventType
from compliance.models import AuditEntry
from tests.accounts.conftest import TEST_PASSWORD

pytestmark = pytest.mark.django_db


def attempt(client, username, password, address="10.0.0.5"):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address)


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_five_failures_lock_the_account_even_for_the_right_password(client, personas):
    for _ in range(5):
        assert attempt(client, "bob", "Wrong-pass-1").status_code == 200
    response = attempt(client, "bob", TEST_PASSWORD, address="10.0.0.6")  # another address: the account is locked
    assert response.status_code == 200 and not signed_in(client)
    assert str(LOGIN_REFUSED) in response.content.decode() or response.context["form"].non_field_errors()
    locks = {
        (e.details["kind"], e.details["key"], e.details["failures"])
        for e in AuditEntry.objects.filter(event_type=EventType.LOCKOUT)
    }
    assert locks == {("account", "bob", 5), ("address", "10.0.0.5", 5)}  # the address made five failures too
    refused = AuditEntry.objects.filter(event_type=EventType.LOGIN_FAILED).order_by("sequence").last()
    assert refused.details["reason"] == "locked"


def test_four_failures_then_success_resets_the_account_counter(client, personas):
    for _ in range(4):
        attempt(client, "bob", "Wrong-pass-1")
    assert attempt(client, "bob", TEST_PASSWORD, address="10.0.0.7").status_code == 302
    client.post(reverse("logout"))
    assert not LoginThrottle.objects.filter(kind="account", key="bob").exists()


def test_five_failures_from_one_address_lock_that_address_across_accounts(client, personas):
    for name in ["alice", "bob", "charlie", "nobody", "alice"]:
        attempt(client, name, "Wrong-pass-1", address="10.9.9.9")
    assert attempt(client, "charlie", TEST_PASSWORD, address="10.9.9.9").status_code == 200
    assert not signed_in(client)
    assert attempt(client, "charlie", TEST_PASSWORD, address="10.9.9.10").status_code == 302


def test_unknown_and_existing_accounts_are_refused_alike(client, personas, settings):
    """Same message, same lockout behaviour, similar timing: nothing tells that bob exists."""
    settings.LOGIN_FAILURE_MIN_SECONDS = 0.15
    known, unknown = [], []
    for i in range(4):
        for name, timings in (("bob", known), ("nobody-here", unknown)):
            started = time.monotonic()
            response = attempt(client, name, "Wrong-pass-1", address=f"10.1.{i}.{len(timings) + 1}")
            timings.append(time.monotonic() - started)
            assert response.status_code == 200
            assert response.context["form"].non_field_errors() == [str(LOGIN_REFUSED)]
    assert min(known + unknown) >= 0.15
    assert abs(statistics.median(known) - statistics.median(unknown)) < 0.05
    # The unknown name is locked exactly like a real one would be.
    attempt(client, "nobody-here", "Wrong-pass-1", address="10.2.0.1")
    assert LoginThrottle.objects.get(kind="account", key="nobody-here").locked_until is not None


def test_lock_expires_after_the_lockout_duration(client, personas):
    for _ in range(5):
        attempt(client, "bob", "Wrong-pass-1")
    LoginThrottle.objects.filter(locked_until__isnull=False).update(locked_until=timezone.now() - timedelta(seconds=1))
    assert attempt(client, "bob", TEST_PASSWORD, address="10.0.0.8").status_code == 302


def test_administrator_unlocks_and_it_is_audited(client, personas, make_user):
    for _ in range(5):
        attempt(client, "bob", "Wrong-pass-1")
    admin = make_user("sysadmin", admin_role="system")
    for throttle in LoginThrottle.objects.filter(kind="account", key="bob"):
        lock_release(throttle=throttle, acting_user=admin)
    unlock = AuditEntry.objects.filter(event_type=EventType.UNLOCK).get()
    assert unlock.actor_name == "sysadmin" and unlock.details["key"] == "bob"
    assert attempt(client, "bob", TEST_PASSWORD, address="10.0.0.9").status_code == 302


def test_api_login_shares_the_lockout(client, personas):
    url = reverse("api-login")
    for _ in range(5):
        response = client.post(url, {"username": "bob", "password": "Wrong-pass-1"}, content_type="application/json")
        assert response.status_code == 401 and response.json()["error"] == "invalid"
    response = client.post(url, {"username": "bob", "password": TEST_PASSWORD}, content_type="application/json")
    assert response.status_code == 401
    # ... and the browser sign-in sees the same lock.
    assert attempt(client, "bob", TEST_PASSWORD, address="10.3.3.3").status_code == 200


def test_api_login_signs_in(client, personas):
    response = client.post(
        reverse("api-login"), {"username": "bob", "password": TEST_PASSWORD}, content_type="application/json"
    )
    assert response.status_code == 200 and response.json() == {"username": "bob"}
    assert client.get(reverse("departments:picker")).status_code == 200


def test_disabled_local_account_is_refused_like_a_wrong_password(client, personas):
    personas.member.is_active = False
    personas.member.save()
    response = attempt(client, "bob", TEST_PASSWORD)
    assert response.status_code == 200 and response.context["form"].non_field_errors() == [str(LOGIN_REFUSED)]


# --- every refusal costs one password hash (no timing oracle for locked or unknown names) --------


@pytest.fixture
def password_hashes(monkeypatch):
    """The password hashes computed, as a list of method names: a spy on the configured hashers
    (the real ones run). A ``verify`` that encodes inside (MD5, PBKDF2) counts once."""
    from django.contrib.auth.hashers import get_hashers

    computed: list[str] = []
    depth = [0]
    for cls in {type(hasher) for hasher in get_hashers()}:
        for name in ("encode", "verify"):
            real = getattr(cls, name)

            def spy(self, *args, _real=real, _name=name, **kwargs):
                depth[0] += 1
                try:
                    return _real(self, *args, **kwargs)
                finally:
                    depth[0] -= 1
                    if depth[0] == 0:
                        computed.append(_name)

            monkeypatch.setattr(cls, name, spy)
    return computed


def _lock(kind: str, key: str) -> None:
    LoginThrottle.objects.create(
        kind=kind, key=key, failures=5, last_failure_at=timezone.now(), locked_until=timezone.now() + timedelta(hours=1)
    )


REFUSALS = {
    "wrong password": ("bob", "Wrong-pass-1", None),
    "unknown name": ("nobody-here", "Wrong-pass-1", None),
    "locked account": ("bob", TEST_PASSWORD, ("account", "bob")),
    "locked unknown name": ("nobody-here", "Wrong-pass-1", ("account", "nobody-here")),
    "locked address": ("bob", TEST_PASSWORD, ("address", "10.0.0.5")),
}


@pytest.mark.parametrize("path", REFUSALS)
@pytest.mark.parametrize("endpoint", ["html", "json"])
def test_every_refusal_runs_exactly_one_password_hash(client, personas, password_hashes, path, endpoint):
    username, password, lock = REFUSALS[path]
    if lock:
        _lock(*lock)
    if endpoint == "html":
        response = attempt(client, username, password)
        assert response.status_code == 200 and response.context["form"].non_field_errors() == [str(LOGIN_REFUSED)]
    else:
        response = client.post(
            reverse("api-login"),
            {"username": username, "password": password},
            content_type="application/json",
            REMOTE_ADDR="10.0.0.5",
        )
        assert response.status_code == 401 and response.json()["error"] == "invalid"
    assert not signed_in(client)
    assert len(password_hashes) == 1, password_hashes


@pytest.mark.parametrize("password", ["", TEST_PASSWORD])
def test_empty_passwords_and_disabled_accounts_also_cost_one_hash(client, personas, password_hashes, password):
    """The JSON sign-in passes an empty password to the pipeline (the form refuses it earlier)."""
    if password:
        personas.member.is_active = False
        personas.member.save()
    response = client.post(
        reverse("api-login"), {"username": "bob", "password": password}, content_type="application/json"
    )
    assert response.status_code == 401 and len(password_hashes) == 1, password_hashes


# --- only a completed sign-in clears the account's counter ---------------------------------------


def test_a_right_password_alone_does_not_clear_the_account_counter(client, make_admin):
    from tests.accounts.conftest import totp_now

    user, device = make_admin("security")
    for i in range(4):
        attempt(client, user.username, "Wrong-pass-1", address=f"10.4.{i}.1")
    response = attempt(client, user.username, TEST_PASSWORD, address="10.4.9.1")
    assert response["Location"] == reverse("login-verify")
    assert LoginThrottle.objects.get(kind="account", key=user.username).failures == 4
    # The fifth failure of any step locks the account.
    bad = "000000" if totp_now(device) != "000000" else "111111"
    response = client.post(reverse("login-verify"), {"token": bad}, REMOTE_ADDR="10.4.9.1")
    assert response["Location"] == reverse("login")
    (lock,) = [e for e in AuditEntry.objects.filter(event_type=EventType.LOCKOUT) if e.details["kind"] == "account"]
    assert lock.details["failures"] == 5 and lock.details["last_reason"] == "totp"


def test_a_completed_sign_in_clears_the_account_counter(client, make_admin):
    from tests.accounts.conftest import totp_now

    user, device = make_admin("audit")
    for _ in range(3):
        attempt(client, user.username, "Wrong-pass-1")
    attempt(client, user.username, TEST_PASSWORD)
    assert client.post(reverse("login-verify"), {"token": totp_now(device)}).status_code == 302
    assert signed_in(client)
    assert not LoginThrottle.objects.filter(kind="account", key=user.username).exists()
    # ... not the address's.
    assert LoginThrottle.objects.get(kind="address", key="10.0.0.5").failures == 3
