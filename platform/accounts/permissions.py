"""The permission layer: one place that says who may do what (AC-1, AC-4..AC-6, SM-1..SM-3, IP-1).

Portal views, the admin console, REST views and websocket consumers ask this module; none of them
checks a role by itself. Three tables decide everything and are what reviewers read:

- ``ADMIN_ACTIONS``: platform actions → the administrator roles (三权分立) allowed to take them;
- ``DEPARTMENT_ACTIONS``: actions inside a department → the membership roles allowed;
- ``MODEL_PERMISSIONS``: the admin console — model → role → view/add/change/delete.
  ``User.has_perm`` answers from it, so every ModelAdmin's default ``has_*_permission`` follows
  it; a model that is not listed is invisible to everyone (deny by default).

How refusals look (and every refusal is audited as ``access.denied``):
- an administration action from outside ``ADMIN_ALLOWED_NETWORKS`` → 404 (the route "does not exist");
- an administration action by a user without the role → 403;
- a department action by a non-member (or for an unknown / inactive department) → 404;
- a department action by a member whose role is too low → 403;
- anyone not signed in → the login page (HTML) or 401/403 (REST, per DRF).

``is_superuser`` grants nothing anywhere.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from enum import StrEnum
from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from accounts.roles import AdminRole, MembershipRole
from compliance.events import EventType, Outcome
from compliance.services import audit_record

ADMIN_NETWORK_REFUSED = "Administration is not available from this network."
ADMIN_ROLE_REFUSED = "This page is for another administrator role."
DEPARTMENT_REFUSED = "No such department, or you are not a member of it."
DEPARTMENT_ROLE_REFUSED = "This needs the department administrator role."


class Action(StrEnum):
    # --- platform administration: the system administrator (SM-1)
    USER_MANAGE = "user.manage"
    DEPARTMENT_MANAGE = "department.manage"
    MEMBERSHIP_MANAGE = "membership.manage"
    MODEL_SETTINGS = "model.settings"
    BACKUP_RUN = "backup.run"
    TWO_FACTOR_RESET = "two_factor.reset"
    # An administrator's second factor is reset by the security administrator, never by the
    # system administrator (who could then take the account over) and never by its owner.
    ADMIN_TWO_FACTOR_RESET = "two_factor.reset_administrator"
    # --- the security administrator (SM-2, AC-5)
    ROLE_ASSIGN = "role.assign"
    GROUP_MAPPING_MANAGE = "group_mapping.manage"
    LABEL_MANAGE = "label.manage"
    RETENTION_MANAGE = "retention.manage"
    SECURITY_POLICY_MANAGE = "security_policy.manage"
    API_KEY_ADMINISTER = "api_key.administer"
    # --- either of them (a lockout is both an account and a security matter)
    LOCK_RELEASE = "lock.release"
    # --- the audit administrator (SM-3)
    AUDIT_VIEW = "audit.view"
    AUDIT_EXPORT = "audit.export"
    # --- inside a department
    DEPARTMENT_ENTER = "department.enter"
    CHAT = "department.chat"
    ASSET_UPLOAD = "asset.upload"
    ASSET_VIEW = "asset.view"
    ASSET_DELETE_OWN = "asset.delete_own"
    ASSET_DELETE_ANY = "asset.delete_any"
    CONVERSATION_VIEW_ANY = "conversation.view_any"
    DEPARTMENT_MEMBERS_VIEW = "department.members_view"
    DEPARTMENT_API_KEY_MANAGE = "department.api_key_manage"


_S, _X, _A = AdminRole.SYSTEM, AdminRole.SECURITY, AdminRole.AUDIT

ADMIN_ACTIONS: dict[Action, frozenset[AdminRole]] = {
    Action.USER_MANAGE: frozenset({_S}),
    Action.DEPARTMENT_MANAGE: frozenset({_S}),
    Action.MEMBERSHIP_MANAGE: frozenset({_S}),
    Action.MODEL_SETTINGS: frozenset({_S}),
    Action.BACKUP_RUN: frozenset({_S}),
    Action.TWO_FACTOR_RESET: frozenset({_S}),
    Action.ROLE_ASSIGN: frozenset({_X}),
    Action.ADMIN_TWO_FACTOR_RESET: frozenset({_X}),
    Action.GROUP_MAPPING_MANAGE: frozenset({_X}),
    Action.LABEL_MANAGE: frozenset({_X}),
    Action.RETENTION_MANAGE: frozenset({_X}),
    Action.SECURITY_POLICY_MANAGE: frozenset({_X}),
    Action.API_KEY_ADMINISTER: frozenset({_X}),
    Action.LOCK_RELEASE: frozenset({_S, _X}),
    Action.AUDIT_VIEW: frozenset({_A}),
    Action.AUDIT_EXPORT: frozenset({_A}),
}

_M, _D = MembershipRole.MEMBER, MembershipRole.ADMIN
DEPARTMENT_ACTIONS: dict[Action, frozenset[str]] = {
    Action.DEPARTMENT_ENTER: frozenset({_M, _D}),
    Action.CHAT: frozenset({_M, _D}),
    Action.ASSET_UPLOAD: frozenset({_M, _D}),
    Action.ASSET_VIEW: frozenset({_M, _D}),
    Action.ASSET_DELETE_OWN: frozenset({_M, _D}),
    Action.ASSET_DELETE_ANY: frozenset({_D}),
    Action.CONVERSATION_VIEW_ANY: frozenset({_D}),
    Action.DEPARTMENT_MEMBERS_VIEW: frozenset({_D}),
    Action.DEPARTMENT_API_KEY_MANAGE: frozenset({_D}),
}

VIEW = frozenset({"view"})
VIEW_CHANGE = frozenset({"view", "change"})
VIEW_ADD_CHANGE = frozenset({"view", "add", "change"})
ALL = frozenset({"view", "add", "change", "delete"})
VIEW_DELETE = frozenset({"view", "delete"})

# The administrators' console. Labels are "app_label.model_name" (proxy models included).
MODEL_PERMISSIONS: dict[str, dict[str, frozenset[str]]] = {
    # system administrator: users (never the admin roles), departments, memberships, files' metadata
    "accounts.user": {_S: VIEW_ADD_CHANGE},  # no delete: accounts are disabled, never removed
    "departments.department": {_S: VIEW_ADD_CHANGE},
    "departments.membership": {_S: ALL},
    "assets.asset": {_S: VIEW, _X: VIEW_CHANGE},  # the security administrator sets labels (AC-7)
    "accounts.loginthrottle": {_S: VIEW_DELETE, _X: VIEW_DELETE},  # delete = unlock (audited)
    # security administrator: roles, group mappings, labels, retention, security parameters
    "accounts.administratorrole": {_X: VIEW_CHANGE},
    "accounts.departmentlabel": {_X: VIEW_CHANGE},
    "accounts.directorygroupmapping": {_X: ALL},
    "accounts.securitypolicy": {_X: VIEW_ADD_CHANGE},
    "compliance.retentionpolicy": {_X: ALL},
    # audit administrator: the trail, read-only (nobody may change or delete it)
    "compliance.auditentry": {_A: VIEW},
    "compliance.auditarchive": {_A: VIEW},
    "compliance.auditanchor": {_A: VIEW},
}
_READ_ONLY_FOR_EVERYONE = {"compliance.auditentry", "compliance.auditarchive", "compliance.auditanchor"}


def model_permissions_register(label: str, grants: dict[str, frozenset[str]]) -> None:
    """For an app that arrives later (e.g. API keys): add its model to the console matrix.

    Call it from the app's ``AppConfig.ready()``; the audit trail can never be made writable.
    """
    label = label.lower()
    if label in _READ_ONLY_FOR_EVERYONE and any(ops - VIEW for ops in grants.values()):
        raise ValueError(f"{label} is read-only for every role")
    MODEL_PERMISSIONS[label] = {AdminRole(role): frozenset(ops) for role, ops in grants.items()}


def role_has_model_permission(role: str, perm: str) -> bool:
    """``perm`` is Django's "app_label.codename", e.g. "departments.change_department"."""
    if not role or "." not in perm:
        return False
    app_label, codename = perm.split(".", 1)
    operation, _, model_name = codename.partition("_")
    grants = MODEL_PERMISSIONS.get(f"{app_label}.{model_name}", {})
    return operation in grants.get(role, frozenset())


def role_has_module_permission(role: str, app_label: str) -> bool:
    if not role:
        return False
    prefix = f"{app_label}."
    return any(label.startswith(prefix) and grants.get(role) for label, grants in MODEL_PERMISSIONS.items())


# --- predicates ---------------------------------------------------------------------------------


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


def admin_action_allowed(user, action: Action) -> bool:
    return has_admin_role(user, *ADMIN_ACTIONS[action])


def department_membership(user, department):
    """The user's membership of an active department, or None (every refusal alike)."""
    from departments.models import Membership

    if not user.is_authenticated or not user.is_active or department is None or not department.is_active:
        return None
    return Membership.objects.filter(user=user, department=department).select_related("department").first()


def department_action_allowed(user, action: Action, department, *, membership=None) -> bool:
    membership = membership if membership is not None else department_membership(user, department)
    return membership is not None and membership.role in DEPARTMENT_ACTIONS[action]


# --- enforcement ---------------------------------------------------------------------------------


def _deny(*, path: str, method: str, reason: str, department=None, action: str = "") -> None:
    audit_record(
        event_type=EventType.ACCESS_DENIED,
        outcome=Outcome.DENIED,
        department=department,
        object_type="route",
        object_repr=path[:255],
        details={"reason": reason, "method": method, "action": action},
    )


def authorize(
    user,
    action: Action,
    *,
    department=None,
    source_ip: str | None = None,
    path: str = "",
    method: str = "",
    membership=None,
) -> None:
    """Raise Http404 / PermissionDenied (audited) unless ``user`` may take ``action``.

    For administration actions ``source_ip`` is the client address (the request's
    ``source_ip``); for department actions ``department`` is required.
    """
    if action in ADMIN_ACTIONS:
        if not admin_network_allowed(source_ip):
            _deny(path=path, method=method, action=action, reason="administration from outside ADMIN_ALLOWED_NETWORKS")
            raise Http404(ADMIN_NETWORK_REFUSED)
        if not admin_action_allowed(user, action):
            roles = "/".join(sorted(ADMIN_ACTIONS[action]))
            _deny(path=path, method=method, action=action, reason=f"requires administrator role {roles}")
            raise PermissionDenied(ADMIN_ROLE_REFUSED)
        return
    membership = membership if membership is not None else department_membership(user, department)
    if membership is None:
        _deny(path=path, method=method, action=action, reason="not a member of this department")
        raise Http404(DEPARTMENT_REFUSED)
    if membership.role not in DEPARTMENT_ACTIONS[action]:
        _deny(
            path=path,
            method=method,
            action=action,
            department=membership.department,
            reason="requires department role " + "/".join(sorted(DEPARTMENT_ACTIONS[action])),
        )
        raise PermissionDenied(DEPARTMENT_ROLE_REFUSED)


def authorize_request(request: HttpRequest, action: Action, *, department=None) -> None:
    """``authorize`` with the request's user, address, path and (portal) department."""
    if department is None:
        department = getattr(request, "department", None)
    authorize(
        request.user,
        action,
        department=department,
        source_ip=getattr(request, "source_ip", None),
        path=request.path,
        method=request.method,
        membership=getattr(request, "membership", None) if department is getattr(request, "department", None) else None,
    )


def action_required(action: Action) -> Callable:
    """A view decorator around ``authorize_request``; anonymous users go to the login page.

    Administration routes answer 404 from outside the admin networks even before login.
    """

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            if action in ADMIN_ACTIONS and not admin_network_allowed(getattr(request, "source_ip", None)):
                authorize_request(request, action)  # raises the audited 404
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            authorize_request(request, action)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def admin_role_required(*roles: AdminRole) -> Callable:
    """A view decorator: the user holds one of ``roles`` and comes from an admin network.

    Prefer ``action_required(Action.X)``; this stays for routes that are about a role itself.
    """

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            if not admin_network_allowed(getattr(request, "source_ip", None)):
                _deny(
                    path=request.path,
                    method=request.method,
                    reason="administration from a network outside ADMIN_ALLOWED_NETWORKS",
                )
                raise Http404(ADMIN_NETWORK_REFUSED)
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_admin_role(request.user, *roles):
                _deny(
                    path=request.path,
                    method=request.method,
                    reason=f"requires administrator role {'/'.join(str(r) for r in roles)}",
                )
                raise PermissionDenied(ADMIN_ROLE_REFUSED)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


class ActionPermission:
    """A DRF permission class: the view names its ``required_action``.

    Department actions use ``request.department`` (set by the API key authentication or the
    department middleware); refusals raise 404/403 exactly like the portal.
    """

    def has_permission(self, request, view) -> bool:
        action = getattr(view, "required_action", None)
        if action is None:
            raise PermissionDenied("view declares no required_action")
        if not request.user or not request.user.is_authenticated:
            return False
        authorize_request(request, action)
        return True

    def has_object_permission(self, request, view, obj) -> bool:
        return True
