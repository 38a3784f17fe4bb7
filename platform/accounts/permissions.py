"""The permission layer: one place that says who may do what.

Views, consumers and API classes call these predicates and decorators instead of checking roles
themselves. Refusals are audited here, so no caller can forget to.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from accounts.models import AdminRole
from compliance.events import EventType, Outcome
from compliance.services import audit_record

ADMIN_NETWORK_REFUSED = "Administration is not available from this network."
ADMIN_ROLE_REFUSED = "This page is for another administrator role."


def admin_network_allowed(source_ip: str | None) -> bool:
    """IP-1: administration only from ADMIN_ALLOWED_NETWORKS."""
    if not source_ip:
        return False
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        return False
    return any(address in network for network in settings.ADMIN_ALLOWED_NETWORKS)


def has_admin_role(user, *roles: AdminRole) -> bool:
    return bool(user.is_authenticated and user.is_active and user.admin_role and user.admin_role in roles)


def _deny(request: HttpRequest, reason: str) -> None:
    audit_record(
        event_type=EventType.ACCESS_DENIED,
        outcome=Outcome.DENIED,
        object_type="route",
        object_repr=request.path[:255],
        details={"reason": reason, "method": request.method},
    )


def admin_role_required(*roles: AdminRole) -> Callable:
    """A view decorator: the user holds one of ``roles`` and comes from an admin network.

    From another network the route answers 404 (it does not exist for them); a signed-in user of
    another role gets 403. Both refusals are audited.
    """

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            if not admin_network_allowed(getattr(request, "source_ip", None)):
                _deny(request, "administration from a network outside ADMIN_ALLOWED_NETWORKS")
                raise Http404(ADMIN_NETWORK_REFUSED)
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_admin_role(request.user, *roles):
                _deny(request, f"requires administrator role {'/'.join(str(r) for r in roles)}")
                raise PermissionDenied(ADMIN_ROLE_REFUSED)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
