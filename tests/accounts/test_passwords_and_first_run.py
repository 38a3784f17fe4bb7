"""Local password policy (IA-1), forced change, first-run administrators (AC-2), no superusers."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from accounts.management.commands.init_admins import ADMINS_EXIST, PASSWORDS_MUST_DIFFER
from accounts.models import SUPERUSER_REFUSED, AccountSource, User
from accounts.passwords import PASSWORD_CLASSES_TOO_FEW, password_expired
from accounts.roles import AdminRole
from compliance.events import EventType
from compliance.models import AuditEntry
from tests.accounts.conftest import TEST_PASSWORD

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("password", "accepted"),
    [
        ("lowercase-only", False),  # lower + symbol: two classes
        ("abcdEFGHij", False),  # two classes
        ("abcdEF12xy", True),
        ("Abc-1", False),  # too short
        ("密码Abc-12345", True),
    ],
)
def test_password_needs_eight_characters_and_three_classes(password, accepted):
    codes: list[str] = []
    try:
        validate_password(password, User(username="someone"))
    except ValidationError as exc:
        codes = [error.code for error in exc.error_list]
    assert (not codes) == accepted, codes
    if not accepted and len(password) >= 8:
        assert PASSWORD_CLASSES_TOO_FEW in codes


def test_expiry_follows_the_policy(make_user, settings):
    user = make_user("old-timer", password_changed_at=timezone.now() - timedelta(days=89))
    assert not password_expired(user)
    user.password_changed_at = timezone.now() - timedelta(days=91)
    assert password_expired(user)
    user.source = AccountSource.DIRECTORY
    assert not password_expired(user)  # the directory's own policy applies


def test_expired_password_must_be_changed_before_signing_in(client, make_user, personas):
    user = make_user("stale", password_changed_at=timezone.now() - timedelta(days=120))
    response = client.post(reverse("login"), {"username": "stale", "password": TEST_PASSWORD})
    assert response["Location"] == reverse("login-password")
    assert client.get(reverse("departments:picker")).status_code == 302  # not signed in yet
    weak = client.post(reverse("login-password"), {"new_password1": "aaaaaaaaaa", "new_password2": "aaaaaaaaaa"})
    assert weak.status_code == 200
    response = client.post(
        reverse("login-password"), {"new_password1": "Renewed-Pass-31", "new_password2": "Renewed-Pass-31"}
    )
    assert response.status_code == 302
    assert client.get(reverse("departments:picker")).status_code == 200
    user.refresh_from_db()
    assert not password_expired(user) and user.check_password("Renewed-Pass-31")
    entry = AuditEntry.objects.filter(event_type=EventType.PASSWORD_CHANGE).get()
    assert entry.actor_name == "stale" and "Renewed" not in str(entry.details)


def write_passwords(
    tmp_path, monkeypatch, system="System-Pass-111", security="Security-Pass-222", audit="Audit-Pass-333"
):
    for name, value in (("SYSTEM", system), ("SECURITY", security), ("AUDIT", audit)):
        path = tmp_path / f"{name.lower()}.txt"
        path.write_text(value + "\n", encoding="utf-8")
        monkeypatch.setenv(f"INIT_{name}_ADMIN_PASSWORD_FILE", str(path))


def test_init_admins_creates_three_local_administrators_once(tmp_path, monkeypatch):
    assert not User.objects.exists()  # no default accounts: a fresh installation has none
    write_passwords(tmp_path, monkeypatch)
    call_command("init_admins", stdout=io.StringIO())
    admins = {u.username: u for u in User.objects.all()}
    assert {u.admin_role for u in admins.values()} == {"system", "security", "audit"}
    assert all(u.source == AccountSource.LOCAL and not u.is_superuser and not u.is_staff for u in admins.values())
    assert admins["sysadmin"].check_password("System-Pass-111") and not password_expired(admins["sysadmin"])
    assert AuditEntry.objects.filter(event_type=EventType.ROLE_CHANGE).count() == 3
    with pytest.raises(CommandError, match=ADMINS_EXIST):
        call_command("init_admins", "--system", "other", stdout=io.StringIO())


def test_init_admins_refuses_weak_or_shared_passwords(tmp_path, monkeypatch):
    write_passwords(tmp_path, monkeypatch, system="weakpass")
    with pytest.raises(CommandError, match="sysadmin"):
        call_command("init_admins", stdout=io.StringIO())
    write_passwords(tmp_path, monkeypatch, system="Same-Pass-123", security="Same-Pass-123")
    with pytest.raises(CommandError, match=PASSWORDS_MUST_DIFFER):
        call_command("init_admins", stdout=io.StringIO())
    assert not User.objects.exists()


def test_init_admins_without_terminal_or_files_explains(monkeypatch):
    for name in ("SYSTEM", "SECURITY", "AUDIT"):
        monkeypatch.delenv(f"INIT_{name}_ADMIN_PASSWORD_FILE", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO())
    with pytest.raises(CommandError, match="INIT_SYSTEM_ADMIN_PASSWORD_FILE"):
        call_command("init_admins", stdout=io.StringIO())


def test_superusers_are_refused_in_production(settings):
    settings.IS_PRODUCTION = True
    with pytest.raises(ValidationError, match="Superusers"):
        User.objects.create_superuser("root", password="Root-Pass-123")
    with pytest.raises(ValidationError):
        User(username="root2", is_superuser=True).save()
    assert "production" in SUPERUSER_REFUSED


def test_production_check_reports_superusers_and_missing_roles(settings, make_user):
    from accounts.checks import check_administrator_accounts

    make_user("root", is_superuser=True)  # possible outside production only
    settings.IS_PRODUCTION = True
    ids = {problem.id for problem in check_administrator_accounts(None, databases=["default"])}
    assert ids == {"accounts.E001", "accounts.W001"}


def test_a_directory_account_can_never_hold_an_administrator_role(make_user):
    from django.db import IntegrityError, transaction

    user = make_user("dir-user", source=AccountSource.DIRECTORY)
    user.admin_role = AdminRole.SECURITY
    with pytest.raises(IntegrityError), transaction.atomic():
        user.save()
