"""TOTP with recovery codes (IA-4), on django-otp; the QR code is drawn here, never fetched."""

from __future__ import annotations

import segno
from django.db import transaction
from django_otp import match_token
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

# The message of a refused ``two_factor_remove`` of one's own (the policy layer words it).
from accounts.permissions import TWO_FACTOR_REQUIRED_FOR_ADMINS as TWO_FACTOR_REQUIRED_FOR_ADMINS
from accounts.permissions import is_administrator, refuse, two_factor_reset_decide
from compliance.events import EventType, Outcome
from compliance.services import audit_record

TOTP_DEVICE_NAME = "authenticator"
RECOVERY_DEVICE_NAME = "recovery codes"
RECOVERY_CODE_COUNT = 10


def two_factor_enrolled(user) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def two_factor_required(user) -> bool:
    """Mandatory for the three administrator roles; for everyone else once they enrolled."""
    return is_administrator(user) or two_factor_enrolled(user)


def totp_device_pending(user) -> TOTPDevice:
    """The unconfirmed device being enrolled (one at a time), created on first call."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-id").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)
    return device


def totp_qr_svg(device: TOTPDevice) -> str:
    """An inline SVG of the otpauth:// URL for the authenticator app."""
    return segno.make(device.config_url, error="m").svg_inline(scale=5, dark="#000", light="#fff")


@transaction.atomic
def totp_enrol_confirm(*, user, device: TOTPDevice, token: str) -> list[str] | None:
    """Confirm the pending device with a first code; returns fresh recovery codes, or None."""
    device = TOTPDevice.objects.select_for_update().get(pk=device.pk, user=user, confirmed=False)
    if not device.verify_token(token):
        audit_record(
            event_type=EventType.TOTP_ENROL, outcome=Outcome.FAILURE, actor=user, obj=user, details={"step": "confirm"}
        )
        return None
    TOTPDevice.objects.filter(user=user, confirmed=True).delete()  # one authenticator per user
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    codes = recovery_codes_regenerate(user=user)
    audit_record(event_type=EventType.TOTP_ENROL, actor=user, obj=user, details={"recovery_codes": len(codes)})
    return codes


@transaction.atomic
def recovery_codes_regenerate(*, user) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


@transaction.atomic
def recovery_codes_renew(*, user) -> list[str]:
    """A user's request for new recovery codes (the old ones stop working); audited."""
    codes = recovery_codes_regenerate(user=user)
    audit_record(event_type=EventType.TOTP_ENROL, actor=user, obj=user, details={"action": "recovery codes renewed"})
    return codes


def two_factor_verify(*, user, token: str):
    """The device that accepts ``token`` (TOTP or a one-time recovery code), or None; audited."""
    token = (token or "").strip().replace(" ", "")
    device = match_token(user, token) if token else None
    details = {"device": type(device).__name__ if device else None}
    if isinstance(device, StaticDevice):
        details["recovery_codes_left"] = device.token_set.count()
    audit_record(
        event_type=EventType.TOTP_VERIFY,
        outcome=Outcome.SUCCESS if device else Outcome.FAILURE,
        actor=user,
        obj=user,
        details=details,
    )
    return device


def two_factor_remove(*, user, acting_user) -> None:
    """Remove ``user``'s devices (they enrol again), if the policy layer lets ``acting_user``
    (``two_factor_reset_decide``). A refusal is recorded, naming the action refused, before
    anything changes, and raised as RefusedForbidden with the message the person reads."""
    action, decision = two_factor_reset_decide(acting_user, user)
    if not decision:
        raise refuse(
            decision,
            action=action,
            actor=acting_user,
            object_type="accounts.user",
            object_id=user.pk,
            object_repr=user.get_username(),
        )
    with transaction.atomic():
        _devices_remove(user=user, acting_user=acting_user)


def _devices_remove(*, user, acting_user) -> None:
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()
    audit_record(
        event_type=EventType.TOTP_ENROL,
        actor=acting_user,
        obj=user,
        details={"action": "removed", "by_administrator": acting_user != user},
    )
