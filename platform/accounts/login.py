"""The sign-in pipeline shared by the portal, the admin console and the API login.

1. ``credentials_check``: lockout first, then the password (local or directory), with one
   refusal message for every failure and a minimum duration, so that neither the text nor the
   timing tells whether the account exists or is locked: every refusal runs exactly one password
   hash (a dummy one for unknown and locked names, as Django does for unknown ones).
2. ``login_begin``: if a second factor (or its enrolment, or a password change) is still due, the
   session only holds a short-lived *pending* login and is not authenticated: no view, REST call
   or websocket treats it as signed in. Otherwise the user is logged in at once.
3. ``second_factor_check`` (a code at sign-in or at a step-up prompt) and ``step_up_check`` (the
   current password, and a code for administrators) count every failure toward the lock;
   ``second_factor_accept`` / ``password_changed`` advance the pending login;
   ``login_complete`` logs in (Django rotates the session key) with the OTP device attached, and
   only then is the account's failure counter cleared.
"""

from __future__ import annotations

import time
from enum import StrEnum

from django.conf import settings
from django.contrib import auth
from django.contrib.auth.hashers import make_password
from django.utils.translation import gettext_lazy as _
from django_otp.models import Device

from accounts.lockout import failure_record, lock_active, success_record
from accounts.models import AccountSource
from accounts.passwords import password_expired
from accounts.permissions import is_administrator
from accounts.two_factor import two_factor_enrolled, two_factor_required, two_factor_verify
from compliance.events import EventType, Outcome
from compliance.services import audit_record

LOGIN_REFUSED = _("Your user name and password did not match, or the account cannot sign in now. Please try again.")
PENDING_LOGIN_EXPIRED = _("The sign-in took too long. Please start again.")
PENDING_SESSION_KEY = "accounts.pending_login"
PENDING_MAX_SECONDS = 300


class Stage(StrEnum):
    VERIFY = "verify"  # enter a TOTP code or a recovery code
    ENROL = "enrol"  # an administrator without an authenticator sets one up
    PASSWORD = "password"  # noqa: S105  (a stage name) the local password expired or was set by an administrator
    DONE = "done"


class LoginRefused(Exception):
    """Any refusal; the message shown is always LOGIN_REFUSED."""


class StepRefused(Exception):
    """A wrong code or current password after the first step (sign-in or a step-up prompt).

    ``locked``: the account or the address is locked now (or already was); the caller ends the
    pending login, or the session, and sends the user back to the sign-in page.
    """

    def __init__(self, reason: str, *, locked: bool):
        super().__init__(reason)
        self.reason = reason
        self.locked = locked


def _pad(started: float) -> None:
    remaining = started + settings.LOGIN_FAILURE_MIN_SECONDS - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


def refusal_audit(username: str, reason: str, **details) -> None:
    """One refused sign-in (or step-up) as ``auth.login_failed``; never the password."""
    audit_record(
        event_type=EventType.LOGIN_FAILED,
        outcome=Outcome.FAILURE,
        object_type="auth.attempt",
        object_repr=username[:150],
        details={"username": username[:150], "reason": reason, **details},
    )


def password_hash_dummy(password: str) -> None:
    """Hash once for nothing: a refusal that needs no password check (a locked name, an empty
    password) costs what a wrong password costs, so its duration tells nothing."""
    make_password(password or "")


def credentials_check(request, *, username: str, password: str):
    """The authenticated user, or LoginRefused after recording the failure."""
    started = time.monotonic()
    source_ip = getattr(request, "source_ip", None)
    try:
        if lock_active(username=username, source_ip=source_ip):
            password_hash_dummy(password)
            refusal_audit(username, "locked")
            raise LoginRefused
        if not password:
            # Empty passwords never reach a backend as a credential (no anonymous LDAP bind).
            password_hash_dummy(password)
            refusal_audit(username, "empty password")
            failure_record(username=username, source_ip=source_ip, reason="password")
            raise LoginRefused
        # One hash here whatever the name: Django's backend hashes a dummy for an unknown name or
        # an account without a usable password, and checks the real one otherwise.
        user = auth.authenticate(request, username=username, password=password)
        if user is None:  # audited by the user_login_failed signal
            failure_record(username=username, source_ip=source_ip, reason="password")
            raise LoginRefused
        if not user.is_active:
            refusal_audit(username, "inactive")
            failure_record(username=username, source_ip=source_ip, reason="inactive")
            raise LoginRefused
        if user.source == AccountSource.DIRECTORY and not is_administrator(user) and not user.memberships.exists():
            refusal_audit(username, "no mapped directory group")  # AC-1: no account without permissions
            raise LoginRefused
        # The account's counter is not cleared here: only a completed sign-in clears it
        # (login_complete), so failures of the second factor add up with the password's.
        return user
    except LoginRefused:
        _pad(started)
        raise


def next_stage(user, pending: dict | None) -> Stage:
    if two_factor_required(user) and not (pending or {}).get("otp_device"):
        return Stage.VERIFY if two_factor_enrolled(user) else Stage.ENROL
    if password_expired(user):
        return Stage.PASSWORD
    return Stage.DONE


def login_begin(request, user, *, next_url: str = "") -> Stage:
    """After the password: log in now, or keep a pending login for the next stage."""
    pending = {"user_id": user.pk, "backend": user.backend, "at": time.time(), "otp_device": None, "next": next_url}
    stage = next_stage(user, pending)
    if stage == Stage.DONE:
        login_complete(request, user, pending)
        return stage
    request.session.cycle_key()
    request.session[PENDING_SESSION_KEY] = pending
    return stage


def pending_login(request):
    """(user, pending) of a pending login that is still valid, else (None, None)."""
    from accounts.models import User

    pending = request.session.get(PENDING_SESSION_KEY)
    if not pending:
        return None, None
    if time.time() - pending["at"] > PENDING_MAX_SECONDS:
        request.session.pop(PENDING_SESSION_KEY, None)
        return None, None
    user = User.objects.filter(pk=pending["user_id"], is_active=True).first()
    if user is None:
        request.session.pop(PENDING_SESSION_KEY, None)
        return None, None
    user.backend = pending["backend"]
    return user, pending


def pending_cancel(request) -> None:
    request.session.pop(PENDING_SESSION_KEY, None)


def second_factor_accept(request, user, pending: dict, device) -> Stage:
    pending["otp_device"] = device.persistent_id
    request.session[PENDING_SESSION_KEY] = pending
    return _advance(request, user, pending)


def second_factor_reject(request, user) -> bool:
    """A wrong code counts toward the lockout like a wrong password; True if now locked."""
    locked = failure_record(username=user.username, source_ip=getattr(request, "source_ip", None), reason="totp")
    if locked:
        pending_cancel(request)
    return locked


def lock_refusal(request, user, *, step: str) -> bool:
    """True (and the refusal audited) while ``user``'s name or the request's address is locked."""
    if not lock_active(username=user.username, source_ip=getattr(request, "source_ip", None)):
        return False
    refusal_audit(user.username, "locked", step=step)
    return True


def second_factor_check(request, user, *, token: str, step: str = "sign-in"):
    """The OTP device accepting ``token`` (a TOTP code or a recovery code).

    A locked account or address is refused before the code is looked at; a wrong code is audited
    (``auth.totp_verify``) and counts toward the lock. Raises StepRefused.
    """
    if lock_refusal(request, user, step=step):
        pending_cancel(request)
        raise StepRefused("locked", locked=True)
    device = two_factor_verify(user=user, token=token)
    if device is None:
        raise StepRefused("second factor", locked=second_factor_reject(request, user))
    return device


def step_up_check(request, user, *, password: str, token: str | None, step: str):
    """A signed-in user proves it again before a sensitive change: the current password, then
    (when ``token`` is not None) a second-factor code. Returns the device (or None).

    Every refusal is audited and counts toward the lock, as at sign-in; the code is not looked at
    after a wrong password (one failure, and no recovery code spent). Raises StepRefused.
    """
    source_ip = getattr(request, "source_ip", None)
    if lock_refusal(request, user, step=step):
        raise StepRefused("locked", locked=True)
    if not user.check_password(password):
        refusal_audit(user.username, "current password", step=step)
        raise StepRefused(
            "current password",
            locked=failure_record(username=user.username, source_ip=source_ip, reason="current password"),
        )
    if token is None:
        return None
    return second_factor_check(request, user, token=token, step=step)


def password_changed(request, user, pending: dict) -> Stage:
    return _advance(request, user, pending)


def _advance(request, user, pending: dict) -> Stage:
    stage = next_stage(user, pending)
    if stage == Stage.DONE:
        login_complete(request, user, pending)
    return stage


def login_complete(request, user, pending: dict) -> None:
    device_id = pending.get("otp_device")
    if device_id:
        # django-otp's login handler stores the device in the session: user.is_verified() is True.
        user.otp_device = Device.from_persistent_id(device_id)
    request.session.pop(PENDING_SESSION_KEY, None)
    auth.login(request, user, backend=pending["backend"])
    success_record(username=user.username)
