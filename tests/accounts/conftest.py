"""Directory fixtures (a real slapd, tests/support/slapd.py), sign-in helpers, channel layers.

slapd runs once per test session. Tests that change the directory use the users reserved for
them, so no test sees another's change.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import channel_layer_use, requirement_missing
from tests.support.slapd import directory_settings, slapd_missing, slapd_running


@pytest.fixture(scope="session")
def slapd():
    missing = slapd_missing()
    if missing:
        requirement_missing(missing)
    with slapd_running() as server:
        yield server


@pytest.fixture
def directory(slapd, settings, monkeypatch):
    """Django configured against the test slapd (plain LDAP on loopback: allowed outside production)."""
    directory_use(slapd, settings, monkeypatch)
    return slapd


def directory_use(slapd, settings, monkeypatch, **overrides: str) -> None:
    """Sign-in through ``slapd`` first, then local accounts; ``overrides`` change directory settings."""
    values = directory_settings(slapd, monkeypatch, **overrides)
    for name, value in values.items():
        setattr(settings, name, value)
    settings.AUTHENTICATION_BACKENDS = [
        "accounts.directory.backends.DirectoryBackend",
        "accounts.directory.backends.LocalAccountBackend",
    ]


# --- sign-in helpers ------------------------------------------------------------------------------


def totp_now(device) -> str:
    """The current code of a django-otp TOTP device, computed as an authenticator app would."""
    from django_otp.oath import TOTP

    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    return f"{totp.token():0{device.digits}d}"


def totp_next(device) -> str:
    """The code of the next time step (tolerance 1 accepts it), to avoid replaying one code."""
    from django_otp.oath import TOTP

    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + device.step
    return f"{totp.token():0{device.digits}d}"


@pytest.fixture
def make_admin(make_user):
    """An administrator of ``role`` with an enrolled authenticator; returns (user, device)."""
    from django.utils import timezone
    from django_otp.plugins.otp_totp.models import TOTPDevice

    def make(role: str, username: str | None = None):
        user = make_user(username or f"{role}-admin", admin_role=role, password_changed_at=timezone.now())
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
        return user, device

    return make


TEST_PASSWORD = "Correct-Horse-9"  # the make_user fixture's


def sign_in_with_totp(client, user, device, *, password: str = TEST_PASSWORD, **extra):
    """The real two-step sign-in: password, then the authenticator's code."""
    from django.urls import reverse

    response = client.post(reverse("login"), {"username": user.username, "password": password}, **extra)
    assert response.status_code == 302, response.content[:500]
    assert response["Location"] == reverse("login-verify")
    response = client.post(reverse("login-verify"), {"token": totp_now(device)}, **extra)
    assert response.status_code == 302
    return response


# --- websockets: the channel layer, in memory and on a real Redis ---------------------------------


@pytest.fixture(params=["in-memory", "redis"])
def channel_layer(request, settings):
    """The configured channel layer; the test runs once per backend."""
    from channels.layers import get_channel_layer

    channel_layer_use(request, settings, request.param)
    return get_channel_layer()


def websocket_of(layer, user) -> str:
    """A channel standing for one open websocket of ``user``: it joined the user's group, as the
    chat consumer does."""
    from asgiref.sync import async_to_sync

    from accounts.sessions import user_group_name

    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(user_group_name(user.pk), channel)
    return channel


def message_for(layer, channel: str, timeout: float = 2.0):
    """The next message on ``channel``, or None after ``timeout``."""
    import asyncio

    from asgiref.sync import async_to_sync

    async def receive():
        try:
            return await asyncio.wait_for(layer.receive(channel), timeout)
        except TimeoutError:
            return None

    return async_to_sync(receive)()
