"""What keeps a session alive (IA-2): what a person does, never what a page does on its own.

Activity: a page view, a form post (uploads included), sending a chat turn, and the "keep me
signed in" answer to the idle warning. Not activity: the status panel's poll, the idle warning's
own look at the session, any other JSON poll, and websocket pings, stop frames or keep-alives.
Were those counted, an open tab would keep its session alive for ever.

This module is the one place that decides:

- HTTP: ``request_is_activity(request, response)``, asked by ``SessionTimeoutMiddleware`` after
  the view. A view that pages poll is marked ``@background``; beyond the marked ones, a GET that
  is not a page (JSON, images) never counts, so a poll that nobody marked does not count either.
- Websockets: a consumer passes ``touch=True`` to its session check only for a frame a person
  sent (the chat's ``turn.start``); pings, stop frames and malformed frames pass ``touch=False``.

Activity is written into the session at most every ``last_seen_write_interval`` (a quarter of the
idle limit, at most a minute), so that the shortest idle setting still works for active people
without a database write per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase

from accounts.sessions import SESSION_LAST_SEEN_KEY

BACKGROUND_ATTRIBUTE = "background_request"
# Writing the session on every request would be a database write per request.
LAST_SEEN_WRITE_MAX_INTERVAL = 60
IDLE_WARNING_MAX_LEAD = 60


def background(view: Callable) -> Callable:
    """Mark a view that pages poll by themselves: calling it never counts as activity."""
    setattr(view, BACKGROUND_ATTRIBUTE, True)
    return view


def request_note_view(request: HttpRequest, view: Callable) -> None:
    """Called before the view runs: carry the view's mark over to the request.

    functools.wraps copies the mark onto the policy decorators' wrappers, in either order.
    """
    if getattr(view, BACKGROUND_ATTRIBUTE, False):
        setattr(request, BACKGROUND_ATTRIBUTE, True)


def request_is_activity(request: HttpRequest, response: HttpResponseBase) -> bool:
    """True for what a person did: a page view or a post; False for a marked or JSON poll."""
    if getattr(request, BACKGROUND_ATTRIBUTE, False):
        return False
    if request.method == "GET":
        return response.get("Content-Type", "").startswith("text/html")
    return request.method not in ("HEAD", "OPTIONS", "TRACE")


def last_seen_write_interval(idle_seconds: int) -> float:
    """How stale the recorded activity may be: a quarter of the idle limit, at most a minute."""
    return min(LAST_SEEN_WRITE_MAX_INTERVAL, idle_seconds / 4)


def idle_warning_seconds(idle_seconds: int) -> float:
    """How long before the idle end the browser warns: half the idle limit, at most a minute."""
    return min(IDLE_WARNING_MAX_LEAD, idle_seconds / 2)


def idle_remaining_seconds(session, *, idle_seconds: int, now: float | None = None) -> float:
    """Seconds until the session ends for inactivity, from the activity it has recorded."""
    now = time.time() if now is None else now
    return float(session.get(SESSION_LAST_SEEN_KEY, 0)) + idle_seconds - now


def activity_record(session, *, idle_seconds: int, now: float | None = None, force: bool = False) -> bool:
    """Record activity in ``session`` unless it was recorded less than the interval ago; True if
    written (the caller saves a session it loaded itself)."""
    now = time.time() if now is None else now
    if not force and now - float(session.get(SESSION_LAST_SEEN_KEY, 0)) <= last_seen_write_interval(idle_seconds):
        return False
    session[SESSION_LAST_SEEN_KEY] = now
    return True
