"""Login failure handling (IA-2, 登录失败处理): lock an account name and a source address.

Counters live in the database (``LoginThrottle``), so several application processes share them.
Failures older than the lockout duration are forgotten, so typos spread over days never add up.

Interactive sign-in counts every failed step — password, second factor (TOTP or recovery code),
enrolment code, and the step-up prompts of a signed-in session (current password, code) —
against the account name and the source address. Only a completed sign-in clears the account's
counter (a right password alone does not: the second factor could otherwise be guessed for
ever), and never the address's (an attacker holding one valid account could otherwise reset
the address counter between guesses at other accounts).

Bad API keys count in a bucket of their own, per source address: an integration with a stale
key behind a shared address does not lock out the people signing in from there, and the other
way round.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.login_policy import current_policy
from accounts.models import LoginThrottle
from compliance.events import EventType, Outcome
from compliance.services import audit_record

Kind = LoginThrottle.Kind


def account_key(username: str) -> str:
    return (username or "").strip().lower()[:150]


def _sign_in_buckets(username: str, source_ip: str | None) -> list[tuple[str, str]]:
    buckets = [(Kind.ACCOUNT, account_key(username))]
    if source_ip:
        buckets.append((Kind.ADDRESS, source_ip))
    return buckets


def _api_key_buckets(source_ip: str | None) -> list[tuple[str, str]]:
    return [(Kind.API_ADDRESS, source_ip)] if source_ip else []


def _locked(buckets: list[tuple[str, str]]) -> bool:
    now = timezone.now()
    query = LoginThrottle.objects.none()
    for kind, key in buckets:
        query = query | LoginThrottle.objects.filter(kind=kind, key=key, locked_until__gt=now)
    return query.exists()


def _locked_row(kind: str, key: str) -> LoginThrottle:
    try:
        with transaction.atomic():
            LoginThrottle.objects.get_or_create(kind=kind, key=key)
    except IntegrityError:  # created concurrently by another process: fine, it exists now
        pass
    return LoginThrottle.objects.select_for_update().get(kind=kind, key=key)


def _failures_count(buckets: list[tuple[str, str]], reason: str) -> bool:
    """Count one failure in each bucket; True if any is (now) locked. Run inside a transaction."""
    policy = current_policy()
    now = timezone.now()
    window = timedelta(seconds=policy.login_lockout_seconds)
    locked = False
    for kind, key in buckets:
        row = _locked_row(kind, key)
        if row.locked_until and row.locked_until > now:
            locked = True
            continue
        if row.last_failure_at is None or now - row.last_failure_at > window or row.locked_until:
            # A fresh series: the previous one is older than the window, or its lock has expired.
            row.failures, row.first_failure_at, row.locked_until = 0, now, None
        row.failures += 1
        row.last_failure_at = now
        if row.failures >= policy.login_max_failures:
            row.locked_until = now + timedelta(seconds=policy.login_lockout_seconds)
            locked = True
            audit_record(
                event_type=EventType.LOCKOUT,
                outcome=Outcome.FAILURE,
                object_type="accounts.loginthrottle",
                object_id=str(row.pk),
                object_repr=f"{kind}:{key}",
                details={
                    "kind": kind,
                    "key": key,
                    "failures": row.failures,
                    "locked_until": row.locked_until.isoformat(),
                    "last_reason": reason,
                },
            )
        row.save()
    return locked


def lock_active(*, username: str, source_ip: str | None) -> bool:
    """True while the account name or the source address is locked for interactive sign-in."""
    return _locked(_sign_in_buckets(username, source_ip))


@transaction.atomic
def failure_record(*, username: str, source_ip: str | None, reason: str) -> bool:
    """Count one failed sign-in step against the name and the address; True if either is (now) locked."""
    return _failures_count(_sign_in_buckets(username, source_ip), reason)


def api_key_lock_active(*, source_ip: str | None) -> bool:
    """True while the source address is locked for API keys."""
    return _locked(_api_key_buckets(source_ip))


@transaction.atomic
def api_key_failure_record(*, source_ip: str | None, reason: str) -> bool:
    """Count one bad API key against the source address's API-key bucket; True if (now) locked."""
    return _failures_count(_api_key_buckets(source_ip), reason)


@transaction.atomic
def success_record(*, username: str) -> None:
    """A sign-in completed (every step): the account's counter starts again."""
    LoginThrottle.objects.filter(kind=Kind.ACCOUNT, key=account_key(username)).delete()


@transaction.atomic
def lock_release(*, throttle: LoginThrottle, acting_user) -> None:
    """An administrator lifts a lock (or clears a counter) before it expires; audited."""
    audit_record(
        event_type=EventType.UNLOCK,
        actor=acting_user,
        obj=throttle,
        object_repr=f"{throttle.kind}:{throttle.key}",
        details={
            "kind": throttle.kind,
            "key": throttle.key,
            "failures": throttle.failures,
            "was_locked_until": throttle.locked_until.isoformat() if throttle.locked_until else None,
        },
    )
    throttle.delete()


@transaction.atomic
def lock_release_for_user(*, user, acting_user) -> int:
    """Unlock a user's account name (the users page action); returns how many rows went."""
    rows = list(LoginThrottle.objects.select_for_update().filter(kind=Kind.ACCOUNT, key=account_key(user.username)))
    for row in rows:
        lock_release(throttle=row, acting_user=acting_user)
    return len(rows)
