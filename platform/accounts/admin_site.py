"""The administrators' console: Django's admin, entered only by the three administrator roles.

Installed as the default admin site (``accounts.apps.PlatformAdminConfig``), so every app's
``@admin.register`` lands here. Entering it is ``Action.CONSOLE_ENTER`` (from the admin networks,
in a session signed in with two factors); what each role sees and may change is the policy
layer's ``CONSOLE`` table, through ``User.has_perm``. Every refusal inside the console — a page of
another role, an action the role may not take — is recorded by the policy layer's one path.
"""

from __future__ import annotations

from functools import wraps

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import URLPattern, URLResolver, reverse
from django.utils.translation import gettext_lazy as _

from accounts.permissions import (
    Action,
    Refused,
    RefusedForbidden,
    SignInRequired,
    authorize_request,
    refusal_record,
)

ADMIN_TWO_FACTOR_REFUSED = "The console needs a session signed in with two-factor authentication."


def console_enter(request) -> None:
    """Raise a recorded refusal unless the request may use the console."""
    authorize_request(request, Action.CONSOLE_ENTER)
    is_verified = getattr(request.user, "is_verified", None)
    if is_verified is None or not is_verified():
        refusal_record(
            action=Action.CONSOLE_ENTER,
            reason="session without two-factor verification",
            actor=request.user,
            path=request.path,
            method=request.method,
        )
        raise RefusedForbidden(ADMIN_TWO_FACTOR_REFUSED)


def _record_unrecorded(request, exc: Exception) -> None:
    """Django's admin refuses by raising PermissionDenied (a page or an object of another role,
    an operation the table does not grant) or Http404; those are recorded here, once."""
    if isinstance(exc, Refused):
        return
    refusal_record(
        action=Action.CONSOLE_ENTER,
        reason=f"console refused: {type(exc).__name__}" + (f" ({exc})" if str(exc) else ""),
        actor=request.user,
        path=request.path,
        method=request.method,
    )


def _mark_console_routes(patterns) -> None:
    """ModelAdmin wraps its views in a function of its own that calls ``admin_view`` on every
    request (so each is entered through ``console_enter``) but copies the inner view's
    attributes; name the action on those wrappers too, for the walk over every route."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            _mark_console_routes(pattern.url_patterns)
        elif not hasattr(pattern.callback, "policy_action"):
            pattern.callback.policy_action = Action.CONSOLE_ENTER


class PlatformAdminSite(admin.AdminSite):
    site_header = _("Platform administration")
    site_title = _("Platform administration")
    index_title = _("Administration console")

    def has_permission(self, request) -> bool:
        try:
            console_enter(request)
        except (Refused, Http404, PermissionDenied):
            return False
        return True

    def admin_view(self, view, cacheable=False):
        """Every console page: entered through the policy layer, its refusals recorded."""
        inner = super().admin_view(view, cacheable)

        @wraps(inner)
        def guarded(request, *args, **kwargs):
            try:
                console_enter(request)
            except SignInRequired:
                return redirect_to_login(request.get_full_path(), reverse("login"))
            try:
                return inner(request, *args, **kwargs)
            except Refused:
                raise
            except PermissionDenied as exc:
                _record_unrecorded(request, exc)
                raise RefusedForbidden(str(exc)) from exc
            except Http404 as exc:
                _record_unrecorded(request, exc)
                raise

        guarded.policy_action = Action.CONSOLE_ENTER
        return guarded

    def get_urls(self):
        urls = super().get_urls()
        for pattern in urls:
            if isinstance(pattern, URLPattern) and not hasattr(pattern.callback, "policy_action"):
                # The login page and the final catch-all are the only views Django leaves unwrapped.
                pattern.callback = self.admin_view(pattern.callback)
        _mark_console_routes(urls)
        return urls

    def login(self, request, extra_context=None):
        """The console has no login of its own: the platform's (password + TOTP) is used."""
        return super().login(request, extra_context)  # entered: Django redirects to the index
