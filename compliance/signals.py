"""Login, logout and failed-login events into the audit trail."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from compliance.context import request_context_update
from compliance.events import EventType, Outcome
from compliance.services import audit_record


@receiver(user_logged_in)
def audit_login(sender, request, user, **kwargs) -> None:
    request_context_update(user=user)
    audit_record(event_type=EventType.LOGIN, actor=user, obj=user)


@receiver(user_logged_out)
def audit_logout(sender, request, user, **kwargs) -> None:
    if user is not None:
        audit_record(event_type=EventType.LOGOUT, actor=user, obj=user)


@receiver(user_login_failed)
def audit_login_failed(sender, credentials, request=None, **kwargs) -> None:
    # The attempted name is recorded (it may not exist); the password never is.
    username = str(credentials.get("username", ""))[:150]
    audit_record(
        event_type=EventType.LOGIN_FAILED,
        outcome=Outcome.FAILURE,
        actor=None,
        object_type="auth.attempt",
        object_repr=username,
        details={"username": username},
    )
