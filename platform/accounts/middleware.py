"""Session timeouts (IA-2) and the administration network allow-list (IP-1)."""

from __future__ import annotations

import time

from django.contrib.auth import logout
from django.contrib.auth.models import AnonymousUser
from django.http import Http404
from django.urls import reverse

from accounts.login_policy import current_policy
from accounts.permissions import ADMIN_NETWORK_REFUSED, _deny, admin_network_allowed
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

    Covers the whole ``/admin/`` tree including its login page, before any view runs; the admin
    site checks again (defence in depth) and other admin routes use ``action_required``.
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
            _deny(
                path=request.path,
                method=request.method,
                reason="administration from outside ADMIN_ALLOWED_NETWORKS",
            )
            raise Http404(ADMIN_NETWORK_REFUSED)
        return self.get_response(request)
