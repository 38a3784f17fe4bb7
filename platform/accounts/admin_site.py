"""The administrators' console: Django's admin, entered only by the three administrator roles.

Installed as the default admin site (``accounts.apps.PlatformAdminConfig``), so every app's
``@admin.register`` lands here. Entering it is ``Action.CONSOLE_ENTER`` (from the admin networks,
in a session signed in with two factors); what each role sees and may change is the policy
layer's ``CONSOLE`` table, through ``User.has_perm``. Every refusal inside the console — a page of
another role, an action the role may not take — is recorded by the policy layer's one path.
"""

from __future__ import annotations

import copy
from functools import wraps

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ImproperlyConfigured, ObjectDoesNotExist, PermissionDenied
from django.http import Http404
from django.urls import URLPattern, URLResolver, reverse
from django.utils.translation import gettext_lazy as _

from accounts.permissions import (
    CONSOLE,
    Action,
    Decision,
    Refused,
    RefusedForbidden,
    SignInRequired,
    authorize_request,
    decide,
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


# The operation each of ModelAdmin's pages asks the table for (``CONSOLE``), to name the action
# its refusal was for; a GET of a change page only views.
_PAGE_OPERATIONS = {
    "changelist_view": "view",
    "history_view": "view",
    "add_view": "add",
    "change_view": "change",
    "delete_view": "delete",
    "user_change_password": "change",  # the user page's "change password" form
}


def _console_target(view, request, kwargs) -> dict:
    """What a console page is about, for its refusal's entry: the model (``object_type``), the
    object, the page, and the action of the ``CONSOLE`` table the page takes."""
    model_admin = getattr(view, "__self__", None)
    page = getattr(view, "__name__", "")
    if not isinstance(model_admin, admin.ModelAdmin):
        app_label = kwargs.get("app_label", "")
        return {"object_type": f"console.{app_label or page}", "console_page": page}
    label = model_admin.model._meta.label_lower
    operation = _PAGE_OPERATIONS.get(page, "")
    if page == "change_view" and request.method not in ("POST", "PUT"):
        operation = "view"
    action = CONSOLE.get(label, {}).get(operation, Action.CONSOLE_ENTER)
    return {
        "action": action,
        "object_type": label,
        "object_id": str(kwargs.get("object_id", kwargs.get("id", "")))[:64],  # the password page's is "id"
        "console_page": page,
    }


def _record_unrecorded(request, exc: Exception, target: dict) -> None:
    """Django's admin refuses by raising PermissionDenied (a page or an object of another role,
    an operation the table does not grant) or Http404; those are recorded here, once, naming the
    model and page refused."""
    if isinstance(exc, Refused):
        return
    where = dict(target)
    action = where.pop("action", Action.CONSOLE_ENTER)
    refusal_record(
        action=action,
        reason=f"console refused: {type(exc).__name__}" + (f" ({exc})" if str(exc) else ""),
        actor=request.user,
        path=request.path,
        method=request.method,
        **where,
    )


def console_refusal_defer(request, decision: Decision, *, action: str, **where) -> None:
    """A refusal decided inside a console page's own transaction (Django's admin validates and
    saves a form in ``transaction.atomic``), where ``refusal_record``, which commits on its own,
    cannot run: ``admin_view`` records it as soon as the page is done."""
    deferred = getattr(request, "_console_refusals", None)
    if deferred is None:
        deferred = request._console_refusals = []
    deferred.append({"action": action, "reason": decision.reason, **where})


def console_decide(request, subject, action: Action, **where) -> Decision:
    """``decide`` for a check inside a console form: a refusal is recorded once the page is done."""
    decision = decide(subject, action)
    if not decision:
        console_refusal_defer(request, decision, action=action, **where)
    return decision


def _record_deferred(request) -> None:
    for refusal in getattr(request, "_console_refusals", None) or ():
        refusal_record(actor=request.user, path=request.path, method=request.method, **refusal)
    request._console_refusals = []


class ServiceWritesAdmin(admin.ModelAdmin):
    """A model's pages whose writes are services (``save_model``, ``delete_model``): each service
    authorizes before it opens a transaction of its own, and records its refusal in one more,
    which cannot run inside another. Django's admin saves a form inside one page-wide
    transaction; here the page runs without it, so a service's refusal (the form's check passed,
    and the policy's answer changed before the write) is recorded and answered 403, not a server
    error with no entry. What a page writes is the service's transaction, audited there; the
    console's own history of a deletion is written once the deletion is made (Django writes it
    first, in the transaction it shares with the deletion). A service that finds its object gone
    (another request deleted it) raises ObjectDoesNotExist: nothing is logged for it.

    Only for pages whose whole write is the service: without the page's transaction, inline
    formsets, many-to-many fields or list_editable would be saved apart from it, so a model
    admin with any of them is refused when it is registered."""

    def __init__(self, model, admin_site):
        super().__init__(model, admin_site)
        if self.inlines or self.list_editable or model._meta.many_to_many:
            raise ImproperlyConfigured(
                f"{type(self).__name__}: a service-written page has no inlines, list_editable or "
                "many-to-many fields (they would be saved outside the service's transaction)"
            )

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return self._changeform_view(request, object_id, form_url, extra_context)

    def delete_view(self, request, object_id, extra_context=None):
        request._console_deleted = []
        try:
            response = self._delete_view(request, object_id, extra_context)
        except ObjectDoesNotExist:  # deleted by another request since the confirmation page
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if request._console_deleted:  # made: now in the console's history
            super().log_deletions(request, request._console_deleted)
        return response

    def log_deletions(self, request, queryset):
        deleting = getattr(request, "_console_deleted", None)
        if deleting is None:  # the changelist's "delete selected": delete_queryset logs each one made
            return None
        deleting.extend(copy.copy(obj) for obj in queryset)  # copies keep the ids the deletion clears
        return None

    def delete_queryset(self, request, queryset):
        """The changelist's "delete selected": one service call per object, each deletion in the
        console's history once made. A refusal stops there; what was deleted before it stays
        deleted and logged, the rest stays."""
        for obj in queryset:
            kept = copy.copy(obj)
            try:
                self.delete_model(request, obj)
            except ObjectDoesNotExist:  # deleted by another request meanwhile: not this one's
                continue
            super().log_deletions(request, [kept])


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
                _record_unrecorded(request, exc, _console_target(view, request, kwargs))
                raise RefusedForbidden(str(exc)) from exc
            except Http404 as exc:
                _record_unrecorded(request, exc, _console_target(view, request, kwargs))
                raise
            finally:
                _record_deferred(request)

        guarded.policy_action = Action.CONSOLE_ENTER
        return guarded

    def get_urls(self):
        urls = super().get_urls()
        for pattern in urls:
            # The login page is the only view Django does not enter through admin_view on every
            # request (its site-wide views carry ``admin_site``): wrapping those again would
            # record each of their refusals twice.
            callback = getattr(pattern, "callback", None)
            if (
                isinstance(pattern, URLPattern)
                and not hasattr(callback, "policy_action")
                and getattr(callback, "admin_site", None) is not self
            ):
                pattern.callback = self.admin_view(callback)
        _mark_console_routes(urls)
        return urls

    def login(self, request, extra_context=None):
        """The console has no login of its own: the platform's (password + TOTP) is used."""
        return super().login(request, extra_context)  # entered: Django redirects to the index
