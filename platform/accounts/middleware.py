"""Session timeouts (IA-2), the administration network allow-list (IP-1), and the net under
refusals that no policy check recorded (AU-1)."""

from __future__ import annotations

import time

from django.contrib.auth import logout
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from accounts.activity import activity_record, request_is_activity, request_note_view
from accounts.login_policy import current_policy
from accounts.permissions import (
    ADMIN_NETWORK_REFUSED,
    Action,
    Refused,
    RefusedNotFound,
    admin_network_allowed,
    refusal_record,
)
from accounts.sessions import session_expiry_reason
from compliance.events import EventType, Outcome
from compliance.services import audit_record


class SessionTimeoutMiddleware:
    """Ends a session idle for longer than the policy allows, or older than the absolute limit,
    and records activity after the view when the request was one (``accounts.activity``)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        idle_seconds = None
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            idle_seconds = current_policy().session_idle_seconds
            reason = session_expiry_reason(request.session, now=time.time(), idle_seconds=idle_seconds)
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
                idle_seconds = None
        response = self.get_response(request)
        # Still the same signed-in session (not logged out by the view, not a fresh login).
        if idle_seconds is not None and request.user.is_authenticated and request_is_activity(request, response):
            activity_record(request.session, idle_seconds=idle_seconds)
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        request_note_view(request, view_func)
        return None


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
