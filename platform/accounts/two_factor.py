"""TOTP with recovery codes (IA-4), on django-otp; the QR code is drawn here, never fetched."""

from __future__ import annotations

import segno
from django.db import transaction
from django_otp import match_token
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.permissions import Action, RefusedForbidden, allowed, is_administrator, refusal_record
from compliance.events import EventType, Outcome
from compliance.services import audit_record

TOTP_DEVICE_NAME = "authenticator"
RECOVERY_DEVICE_NAME = "recovery codes"
RECOVERY_CODE_COUNT = 10
TWO_FACTOR_REQUIRED_FOR_ADMINS = "Administrators cannot switch two-factor authentication off."
ADMIN_TWO_FACTOR_RESET_SECURITY_ONLY = (
    "An administrator's two-factor authentication is reset only by the security administrator."
)


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


def two_factor_remove_refusal(*, user, acting_user) -> str | None:
    """Why ``acting_user`` may not remove ``user``'s second factor, or None.

    Members may switch theirs off, and the system administrator resets anyone's but an
    administrator's; an administrator's is reset only by the security administrator, never by
    its owner (separation of the three administrators: otherwise the system administrator could
    reset the audit administrator's factor and enrol one of their own).
    """
    if not is_administrator(user):
        return None
    if acting_user == user:
        return TWO_FACTOR_REQUIRED_FOR_ADMINS
    if not allowed(acting_user, Action.ADMIN_TWO_FACTOR_RESET):
        return ADMIN_TWO_FACTOR_RESET_SECURITY_ONLY
    return None


def two_factor_remove(*, user, acting_user) -> None:
    """Remove ``user``'s devices (they enrol again). A refusal is recorded before anything
    changes and raised as RefusedForbidden, with the reason as its message."""
    refusal = two_factor_remove_refusal(user=user, acting_user=acting_user)
    if refusal is not None:
        refusal_record(
            action=Action.OWN_ACCOUNT if acting_user == user else Action.TWO_FACTOR_RESET,
            reason=refusal,
            actor=acting_user,
            object_type="accounts.user",
            object_id=user.pk,
            object_repr=user.get_username(),
        )
        raise RefusedForbidden(refusal)
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
