"""The websocket side of sessions: join the user's group, close on ``session.terminate``, and apply
the same idle and absolute timeouts as HTTP (IA-2 "on HTTP and on websockets alike").

A consumer mixes ``SessionBoundConsumerMixin`` into an ``AsyncWebsocketConsumer`` (run behind
``AuthMiddlewareStack``), calls ``await self.session_join()`` in ``connect`` (closing if it returns
False), ``await self.session_alive()`` on every received message, and ``await self.session_leave()``
in ``disconnect``. Only a frame a person sent counts as activity (``accounts.activity``): the
consumer passes ``touch=True`` for those alone; pings, stop frames and keep-alives do not.
"""

from __future__ import annotations

import time

from channels.db import database_sync_to_async

from accounts.activity import activity_record
from accounts.login_policy import current_policy
from accounts.sessions import session_expiry_reason, session_store, user_group_name

CLOSE_SESSION_ENDED = 4401  # application close code: the session is over, sign in again


class SessionBoundConsumerMixin:
    _session_group: str | None = None

    async def session_join(self) -> bool:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            return False
        if not await self.session_alive(touch=False):
            return False
        self._session_group = user_group_name(user.pk)
        await self.channel_layer.group_add(self._session_group, self.channel_name)
        return True

    async def session_leave(self) -> None:
        if self._session_group:
            await self.channel_layer.group_discard(self._session_group, self.channel_name)

    async def session_alive(self, *, touch: bool = False) -> bool:
        """False (and the socket closed) once the HTTP session is idle, too old, or gone.

        ``touch``: the frame being answered was a person's action, which keeps the session alive.
        """
        reason = await database_sync_to_async(self._session_check)(touch)
        if reason:
            await self.close(code=CLOSE_SESSION_ENDED)
            return False
        return True

    def _session_check(self, touch: bool) -> str | None:
        session = self.scope.get("session")
        key = getattr(session, "session_key", None)
        if not key:
            return "gone"
        fresh = session_store()(session_key=key)  # re-read: the scope holds the handshake's copy
        if not fresh.exists(key):
            return "gone"  # logged out, disabled, demoted: the session row was deleted
        now = time.time()
        idle_seconds = current_policy().session_idle_seconds
        reason = session_expiry_reason(fresh, now=now, idle_seconds=idle_seconds)
        if reason is None and touch and activity_record(fresh, idle_seconds=idle_seconds, now=now):
            fresh.save()
        return reason

    async def session_terminate(self, event: dict) -> None:
        """Handler of the ``session.terminate`` group message (accounts.sessions)."""
        await self.close(code=CLOSE_SESSION_ENDED)
