"""The administrators' console: Django's admin, entered only by the three administrator roles.

Installed as the default admin site (``accounts.apps.PlatformAdminConfig``), so every app's
``@admin.register`` lands here. What each role sees is the role matrix of
``accounts.permissions.MODEL_PERMISSIONS`` (through ``User.has_perm``).
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from accounts.permissions import (
    ADMIN_NETWORK_REFUSED,
    ADMIN_ROLE_REFUSED,
    _deny,
    admin_network_allowed,
)

ADMIN_TWO_FACTOR_REFUSED = "The console needs a session signed in with two-factor authentication."


def admin_access_problem(request) -> str | None:
    """Why ``request`` may not use the console, or None."""
    if not admin_network_allowed(getattr(request, "source_ip", None)):
        return "network"
    user = request.user
    if not (user.is_authenticated and user.is_active):
        return "anonymous"
    if not user.admin_role:
        return "role"
    is_verified = getattr(user, "is_verified", None)
    if is_verified is None or not is_verified():
        return "two_factor"
    return None


class PlatformAdminSite(admin.AdminSite):
    site_header = _("Platform administration")
    site_title = _("Platform administration")
    index_title = _("Administration console")

    def has_permission(self, request) -> bool:
        return admin_access_problem(request) is None

    def login(self, request, extra_context=None):
        """The console has no login of its own: the platform's (password + TOTP) is used."""
        problem = admin_access_problem(request)
        if problem == "network":
            _deny(path=request.path, method=request.method, reason="administration from outside ADMIN_ALLOWED_NETWORKS")
            raise Http404(ADMIN_NETWORK_REFUSED)
        if problem == "anonymous":
            return redirect_to_login(request.GET.get("next") or reverse("admin:index"), reverse("login"))
        if problem in ("role", "two_factor"):
            reason = "no administrator role" if problem == "role" else "session without two-factor verification"
            _deny(path=request.path, method=request.method, reason=reason)
            raise PermissionDenied(ADMIN_ROLE_REFUSED if problem == "role" else ADMIN_TWO_FACTOR_REFUSED)
        return super().login(request, extra_context)  # permitted: Django redirects to the index
