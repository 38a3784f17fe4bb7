"""The login and session parameters in force: the security administrator's row, else the environment."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class LoginPolicy:
    login_max_failures: int
    login_lockout_seconds: int
    session_idle_seconds: int
    password_max_age_days: int


def policy_from_settings() -> LoginPolicy:
    return LoginPolicy(
        login_max_failures=settings.LOGIN_MAX_FAILURES,
        login_lockout_seconds=settings.LOGIN_LOCKOUT_SECONDS,
        session_idle_seconds=settings.SESSION_IDLE_SECONDS,
        password_max_age_days=settings.PASSWORD_MAX_AGE_DAYS,
    )


def current_policy() -> LoginPolicy:
    """One primary-key read per call; cheap next to a login or a session check."""
    from accounts.models import SecurityPolicy

    row = SecurityPolicy.objects.filter(pk=1).first()
    if row is None:
        return policy_from_settings()
    return LoginPolicy(
        login_max_failures=row.login_max_failures,
        login_lockout_seconds=row.login_lockout_seconds,
        session_idle_seconds=row.session_idle_seconds,
        password_max_age_days=row.password_max_age_days,
    )
