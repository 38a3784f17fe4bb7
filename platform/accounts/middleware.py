"""Session timeouts (IA-2), the administration network allow-list (IP-1), and the net under
refusals that no policy check recorded (AU-1)."""

from __future__ import annotations

import time

from django.contrib.auth import logout
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from accounts.login_policy import current_policy
from accounts.permissions import (
    ADMIN_NETWORK_REFUSED,
    Action,
    Refused,
    RefusedNotFound,
    admin_network_allowed,
    refusal_record,
)
from accounts.sessions import SESSION_LAST_SEEN_KEY, session_expiry_reason
from compliance.events import EventType, Outcome
from compliance.services import audit_record

# Writing the session on every request would be a database write per request; a minute of
# imprecision on a thirty-minute idle timeout is the price of not doing so.
LAST_SEEN_WRITE_INTERVAL = 60


class SessionTimeoutMiddleware:
    """Ends a session idle for longer than the policy allows, or older than the absolute limit."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            now = time.time()
            reason = session_expiry_reason(request.session, now=now, idle_seconds=current_policy().session_idle_seconds)
            if reason:
                audit_record(
                    event_type=EventType.SESSION_EXPIRED,
                    outcome=Outcome.SUCCESS,
                    actor=user,
                    obj=user,
                    details={"reason": reason},
                )
                logout(request)  # flushes the session, forgets its record, closes the websockets
                request.user = AnonymousUser()
                request.session_expired = reason
            elif now - request.session.get(SESSION_LAST_SEEN_KEY, 0) > LAST_SEEN_WRITE_INTERVAL:
                request.session[SESSION_LAST_SEEN_KEY] = now
        return self.get_response(request)


class AdminNetworkMiddleware:
    """Every administration route answers 404 from outside ADMIN_ALLOWED_NETWORKS.

    Covers the whole ``/admin/`` tree, unknown paths included, before any view runs; the console
    pages ask the policy layer again (defence in depth), as every other administration route does.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self._prefix: str | None = None

    def __call__(self, request):
        if self._prefix is None:
            self._prefix = reverse("admin:index")
        if request.path_info.startswith(self._prefix) and not admin_network_allowed(
            getattr(request, "source_ip", None)
        ):
            refusal_record(
                action=Action.CONSOLE_ENTER,
                reason="administration from outside ADMIN_ALLOWED_NETWORKS",
                path=request.path,
                method=request.method,
            )
            raise RefusedNotFound(ADMIN_NETWORK_REFUSED)
        return self.get_response(request)


class RefusalRecordMiddleware:
    """The safety net of "every refusal is recorded": a view that refuses with Django's own
    PermissionDenied instead of asking the policy layer still leaves an ``access.denied`` entry
    (written here, after the view's transaction is over). Refusals of the policy layer are
    recorded where they are decided and pass through untouched."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, PermissionDenied) and not isinstance(exception, Refused):
            user = getattr(request, "user", None)
            refusal_record(
                action="view",
                reason=str(exception) or "permission denied by the view",
                actor=user if user is not None and user.is_authenticated else None,
                department=getattr(request, "department", None),
                path=request.path,
                method=request.method,
            )
        return None
