"""Each user's sessions and websockets, so that they can be ended together (SM-1..3, AC-3, RI-1).

Every login records its session key (``UserSession``). Logout, disabling a user, changing their
administrator role, demoting or removing a membership end every recorded session and tell the
user's websockets to close: each websocket consumer joins ``user_group_name(user.pk)`` and closes
when it receives a message of type ``session.terminate``.

The messages go out with ``transaction.on_commit``: a change that is rolled back kicks nobody.
"""

from __future__ import annotations

import logging
from importlib import import_module

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

from accounts.models import UserSession
from compliance.context import current_request_context

logger = logging.getLogger(__name__)

TERMINATE_MESSAGE_TYPE = "session.terminate"
SESSION_LOGIN_AT_KEY = "accounts.login_at"
SESSION_LAST_SEEN_KEY = "accounts.last_seen"


def user_group_name(user_id: int) -> str:
    """The Channels group every websocket of this user joins."""
    return f"user.{int(user_id)}"


def session_store():
    return import_module(settings.SESSION_ENGINE).SessionStore


def session_record(*, user, session_key: str) -> UserSession:
    context = current_request_context()
    record, _ = UserSession.objects.update_or_create(
        session_key=session_key,
        defaults={
            "user": user,
            "source_ip": context.source_ip if context else None,
            "user_agent": (context.user_agent if context else "")[:512],
        },
    )
    return record


def session_forget(*, session_key: str) -> None:
    UserSession.objects.filter(session_key=session_key).delete()


def websocket_terminate(*, user_id: int, reason: str) -> None:
    """Close the user's open websockets once the current transaction commits."""

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(
                user_group_name(user_id), {"type": TERMINATE_MESSAGE_TYPE, "reason": reason}
            )
        except Exception:  # the sessions are gone already; a dead layer must not fail the change
            logger.exception("could not tell the websockets of user %s to close", user_id)

    transaction.on_commit(send)


def sessions_end_for_user(*, user, reason: str, keep_session_key: str | None = None) -> int:
    """Delete every recorded session of ``user`` (except ``keep_session_key``) and kick websockets."""
    store = session_store()
    ended = 0
    for record in UserSession.objects.filter(user=user).exclude(session_key=keep_session_key or ""):
        store(session_key=record.session_key).delete()
        record.delete()
        ended += 1
    websocket_terminate(user_id=user.pk, reason=reason)
    return ended


def session_expiry_reason(session, *, now: float, idle_seconds: int) -> str | None:
    """ "idle", "absolute" or None for an authenticated session; websocket consumers call it too.

    A session without the login time was not made by this platform's login (or predates it) and
    is treated as expired.
    """
    login_at = session.get(SESSION_LOGIN_AT_KEY)
    last_seen = session.get(SESSION_LAST_SEEN_KEY)
    if login_at is None or last_seen is None:
        return "unknown"
    if now - float(login_at) > settings.SESSION_COOKIE_AGE:
        return "absolute"
    if now - float(last_seen) > idle_seconds:
        return "idle"
    return None
