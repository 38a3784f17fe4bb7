"""The policy layer: the one table of who may do what, and the one place that answers it
(AC-1, AC-4..AC-6, SM-1..SM-3, IP-1).

Every route, websocket, REST view, console page and service asks this module; no other module
compares a role. Read it in this order:

- ``Action``: everything a person, an API key or an anonymous visitor can ask to do, public
  routes included (health, sign-in, the schema…: bound to explicit ``public`` actions, so a test
  can walk the URL resolver and find every route bound to one);
- ``POLICY``: action → ``Grant`` (who may). This table is what a reviewer reads;
- ``CONSOLE``: the administrators' console, model → operation → action. ``User.has_perm`` answers
  from it through ``POLICY``, so the console follows the same table; a model not listed is
  invisible to everyone (deny by default), and the audit trail has no write operation at all.

Operators (monitoring) are not accounts: ``Grant.operator`` lets a request through from
``ADMIN_ALLOWED_NETWORKS`` or with the operator token (``METRICS_TOKEN``), whoever is signed in.

How refusals look (each one recorded as ``access.denied`` by ``refusal_record``, in a
transaction of its own that a rolled-back action cannot take with it):
- anyone not signed in → the login page (HTML) or 401 (REST);
- an operator's action (``/metrics``) neither from ``ADMIN_ALLOWED_NETWORKS`` nor with the operator
  token → 404;
- an administration action from outside ``ADMIN_ALLOWED_NETWORKS`` → 404 (the route "does not
  exist"), before anything else;
- an administration action by a user without the role → 403;
- a department action by a non-member (or for an unknown / inactive department), or on an object
  of another department → 404;
- a department action by a member whose role is too low → 403; on another member's private
  object (a conversation) → 404;
- an API key without the scope → 403; on another department's object → 404.

``is_superuser`` grants nothing anywhere.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest

from accounts.roles import AdminRole, MembershipRole
from compliance.context import address_in
from compliance.events import EventType, Outcome
from compliance.services import audit_record

ADMIN_NETWORK_REFUSED = "Administration is not available from this network."
ADMIN_ROLE_REFUSED = "This page is for another administrator role."
DEPARTMENT_REFUSED = "No such department, or you are not a member of it."
DEPARTMENT_ROLE_REFUSED = "This needs the department administrator role."
OBJECT_REFUSED = "Not found."
OWNER_REFUSED = "Only the owner may do this."
SCOPE_REFUSED = "This API key lacks the '{scope}' scope."
NOT_FOR_API_KEYS = "This is not available to API keys."
SIGN_IN_REQUIRED = "Authentication required."
API_KEYS_ONLY = "This is for API keys only."
SWITCH_REFUSED = "The department's policy does not allow this."
ADMINISTRATOR_HOLDS_NO_DEPARTMENT_ACCESS = (
    "An administrator account holds no department membership and no department API key."
)
ROLE_FOR_DEPARTMENT_ACCESS_HOLDER_REFUSED = (
    "This account holds department memberships or API keys: remove them before giving it an administrator role."
)
ADMIN_ACCOUNT_REFUSED = "Administrator accounts are not managed here."
OWN_ROLE_REFUSED = "You cannot change your own administrator role."
TWO_FACTOR_REQUIRED_FOR_ADMINS = "Administrators cannot switch two-factor authentication off."
ADMIN_TWO_FACTOR_RESET_SECURITY_ONLY = (
    "An administrator's two-factor authentication is reset only by the security administrator."
)


class Action(StrEnum):
    # --- public: anyone, signed in or not
    HEALTH = "public.health"  # /healthz, /readyz (its details: an operator's, as METRICS)
    SIGN_IN = "public.sign_in"  # the sign-in steps, the JSON sign-in, signing out
    LANGUAGE = "public.language"  # /i18n/setlang/
    API_SCHEMA = "public.api_schema"  # /api/schema/, /api/docs/
    STATIC = "public.static"  # STATIC_URL, served by WhiteNoise before any route
    ENTRY = "public.entry"  # "/" redirects to the department picker
    # --- no account needed, but only an operator's request (Grant.operator)
    METRICS = "public.metrics"  # /metrics, and the details of /readyz
    # --- any signed-in person, about themselves
    OWN_ACCOUNT = "account.own"  # password, two-factor, recovery codes
    DEPARTMENT_PICK = "department.pick"  # the list of one's own departments
    # --- platform administration: the system administrator (SM-1)
    CONSOLE_ENTER = "console.enter"  # any of the three administrators
    USER_MANAGE = "user.manage"
    DEPARTMENT_MANAGE = "department.manage"
    ASSET_METADATA_VIEW = "asset.metadata_view"
    # The model registry: the system administrator registers, activates and rolls back versions;
    # only a version the security administrator approved can be activated (SM-1, SM-2)
    MODEL_REGISTRY_VIEW = "model.registry_view"
    MODEL_REGISTER = "model.register"
    MODEL_ACTIVATE = "model.activate"
    TWO_FACTOR_RESET = "two_factor.reset"
    # An administrator's second factor is reset by the security administrator, never by the
    # system administrator (who could then take the account over) and never by its owner.
    ADMIN_TWO_FACTOR_RESET = "two_factor.reset_administrator"
    # --- the security administrator (SM-2, AC-5)
    ROLE_ASSIGN = "role.assign"
    MEMBERSHIP_MANAGE = "membership.manage"  # granting department data access is a permission
    GROUP_MAPPING_MANAGE = "group_mapping.manage"
    LABEL_MANAGE = "label.manage"
    RETENTION_MANAGE = "retention.manage"
    SECURITY_POLICY_MANAGE = "security_policy.manage"
    CHAT_POLICY_MANAGE = "chat_policy.manage"
    API_KEY_ADMINISTER = "api_key.administer"
    MODEL_APPROVE = "model.approve"  # a model version may be loaded at all
    # --- either of them (a lockout is both an account and a security matter)
    LOCK_RELEASE = "lock.release"
    # --- the audit administrator (SM-3); the report also for the security administrator
    AUDIT_VIEW = "audit.view"
    AUDIT_EXPORT = "audit.export"
    COMPLIANCE_REPORT_VIEW = "compliance_report.view"
    # --- whom department data access may be given to (a membership, a department API key): the
    # subject is the account that would hold it, not the one who grants it (SM-1..3, AC-4)
    DEPARTMENT_ACCESS_HOLD = "department.access_hold"
    # --- inside a department
    DEPARTMENT_ENTER = "department.enter"
    CHAT = "department.chat"
    ASSET_UPLOAD = "asset.upload"
    ASSET_VIEW = "asset.view"
    ASSET_DELETE = "asset.delete"  # one's own files; any file for the department administrator
    ASSET_LABEL_RAISE = "asset.label_raise"  # lowering a label is LABEL_MANAGE (security policy)
    CONVERSATION_OWN = "conversation.own"  # rename, delete, continue: the owner alone
    CONVERSATION_VIEW_ANY = "conversation.view_any"  # who chatted when, never what was said
    CONVERSATION_CONTENT_VIEW = "conversation.content_view"  # only where the chat policy allows it
    TASK_TEMPLATE_MANAGE = "task_template.manage"
    DEPARTMENT_API_KEY_MANAGE = "department.api_key_manage"
    DEPARTMENT_MODEL_MANAGE = "department.model_manage"  # which approved models the department uses
    CONVERSATION_EXPORT = "conversation.export"  # Markdown/JSON of one's own conversation
    EXTRACTION_RUN = "extraction.run"  # the portal's extraction and batch screens
    EXTRACTION_REVIEW = "extraction.review"  # a reviewer's correction (the original is kept)
    BATCH_CANCEL = "batch.cancel"  # one's own batch; any batch for the department administrator
    DOCUMENT_SEARCH = "document.search"  # full text over the department's documents
    USAGE_VIEW = "usage.view"  # requests and tokens of the department, by day and person: counts only
    # --- the system administrator: usage of every department (counts only, never content)
    USAGE_VIEW_ALL = "usage.view_all"
    # --- REST API keys, one action per scope
    API_CHAT = "api.chat"
    API_ASSETS_READ = "api.assets_read"
    API_ASSETS_WRITE = "api.assets_write"
    API_EXTRACT = "api.extract"
    API_AUDIT_READ = "api.audit_read"


@dataclass(frozen=True)
class Grant:
    """Who may take an action. Empty means nobody; every field that is set grants on its own, but
    ``admin_network`` and ``operator``, which narrow where a request may come from."""

    public: bool = False  # no account needed: anyone, signed in or not
    signed_in: bool = False
    admin_roles: frozenset[AdminRole] = frozenset()
    department_roles: frozenset[MembershipRole] = frozenset()  # on anything of the department
    owner_roles: frozenset[MembershipRole] = frozenset()  # on the objects the person owns
    owner_only_hides: bool = False  # True: another member's object answers 404 (it is private)
    api_scope: str = ""  # department API keys (or audit keys) holding this scope
    admin_network: bool = False  # only from ADMIN_ALLOWED_NETWORKS (every admin action is)
    # A department's own policy switch that must also be on (set by the security administrator)
    department_switch: str = ""
    # Any account that holds none of the three administrator roles (whether it is signed in or not)
    non_administrators: bool = False
    # Only an operator's request: from ADMIN_ALLOWED_NETWORKS, or with the operator token
    # (``Authorization: Bearer $METRICS_TOKEN``; a wrong token is refused from anywhere). Checked
    # where the network is (requests), before anything else; the answer otherwise is 404.
    operator: bool = False
    # Refused on some accounts even to whoever the grant lets take the action (``decide``'s
    # ``account``, the account acted on), each with the message the person refused reads: their
    # own account, or an administrator's (one holding any of the three roles, active or not: a
    # disabled administrator's account may be enabled again).
    own_account_refused: str = ""
    administrator_account_refused: str = ""

    @property
    def administration(self) -> bool:
        return bool(self.admin_roles) or self.admin_network


_S, _X, _A = AdminRole.SYSTEM, AdminRole.SECURITY, AdminRole.AUDIT
_M, _D = MembershipRole.MEMBER, MembershipRole.ADMIN
_PUBLIC = Grant(public=True)
_OPERATORS = Grant(public=True, operator=True)
_SIGNED_IN = Grant(signed_in=True)


def _admins(*roles: AdminRole, not_own_account: str = "", not_administrator_accounts: str = "") -> Grant:
    return Grant(
        admin_roles=frozenset(roles),
        admin_network=True,
        own_account_refused=not_own_account,
        administrator_account_refused=not_administrator_accounts,
    )


def _department(
    *roles: MembershipRole,
    owners: tuple[MembershipRole, ...] = (),
    hides: bool = False,
    scope: str = "",
    switch: str = "",
) -> Grant:
    return Grant(
        department_roles=frozenset(roles),
        owner_roles=frozenset(owners),
        owner_only_hides=hides,
        api_scope=scope,
        department_switch=switch,
    )


# A department's chat policy: may its administrators read conversations? (off by default)
CHAT_CONTENT_SWITCH = "chat.admin_may_read_content"

# THE table.
POLICY: Mapping[Action, Grant] = {
    Action.HEALTH: _PUBLIC,
    Action.METRICS: _OPERATORS,
    Action.SIGN_IN: _PUBLIC,
    Action.LANGUAGE: _PUBLIC,
    Action.API_SCHEMA: _PUBLIC,
    Action.STATIC: _PUBLIC,
    Action.ENTRY: _PUBLIC,
    Action.OWN_ACCOUNT: _SIGNED_IN,
    Action.DEPARTMENT_PICK: _SIGNED_IN,
    Action.CONSOLE_ENTER: _admins(_S, _X, _A),
    # People's accounts, never an administrator's (the system administrator's own included):
    # otherwise they could reset the security or audit administrator's password and sign in as them.
    Action.USER_MANAGE: _admins(_S, not_administrator_accounts=ADMIN_ACCOUNT_REFUSED),
    Action.DEPARTMENT_MANAGE: _admins(_S),
    Action.ASSET_METADATA_VIEW: _admins(_S, _X),
    Action.MODEL_REGISTRY_VIEW: _admins(_S, _X),
    Action.MODEL_REGISTER: _admins(_S),
    Action.MODEL_ACTIVATE: _admins(_S),
    Action.TWO_FACTOR_RESET: _admins(_S),
    Action.ADMIN_TWO_FACTOR_RESET: _admins(_X),
    # Nobody moves themselves between the three roles.
    Action.ROLE_ASSIGN: _admins(_X, not_own_account=OWN_ROLE_REFUSED),
    Action.MEMBERSHIP_MANAGE: _admins(_X),
    Action.GROUP_MAPPING_MANAGE: _admins(_X),
    Action.LABEL_MANAGE: _admins(_X),
    Action.RETENTION_MANAGE: _admins(_X),
    Action.SECURITY_POLICY_MANAGE: _admins(_X),
    Action.CHAT_POLICY_MANAGE: _admins(_X),
    Action.API_KEY_ADMINISTER: _admins(_X),
    Action.MODEL_APPROVE: _admins(_X),
    Action.LOCK_RELEASE: _admins(_S, _X),
    Action.AUDIT_VIEW: _admins(_A),
    Action.AUDIT_EXPORT: _admins(_A),
    Action.COMPLIANCE_REPORT_VIEW: _admins(_X, _A),
    # The three administrators administer; none of them holds department data (SM-1..3).
    Action.DEPARTMENT_ACCESS_HOLD: Grant(non_administrators=True),
    Action.DEPARTMENT_ENTER: _department(_M, _D),
    Action.CHAT: _department(_M, _D),
    Action.ASSET_UPLOAD: _department(_M, _D, scope="assets:write"),
    Action.ASSET_VIEW: _department(_M, _D, scope="assets:read"),
    Action.ASSET_DELETE: _department(_D, owners=(_M,), scope="assets:write"),
    Action.ASSET_LABEL_RAISE: _department(_D),
    Action.CONVERSATION_OWN: _department(owners=(_M, _D), hides=True),
    Action.CONVERSATION_VIEW_ANY: _department(_D),
    Action.CONVERSATION_CONTENT_VIEW: _department(_D, switch=CHAT_CONTENT_SWITCH),
    Action.TASK_TEMPLATE_MANAGE: _department(_D),
    Action.DEPARTMENT_API_KEY_MANAGE: _department(_D),
    Action.DEPARTMENT_MODEL_MANAGE: _department(_D),
    Action.CONVERSATION_EXPORT: _department(owners=(_M, _D), hides=True),
    Action.EXTRACTION_RUN: _department(_M, _D),
    Action.EXTRACTION_REVIEW: _department(_D, owners=(_M,)),
    # an API key's batches are the department's integration: any key with the scope may stop them
    Action.BATCH_CANCEL: _department(_D, owners=(_M,), scope="extract"),
    Action.DOCUMENT_SEARCH: _department(_M, _D, scope="assets:read"),
    Action.USAGE_VIEW: _department(_D),
    Action.USAGE_VIEW_ALL: _admins(_S),
    Action.API_CHAT: Grant(api_scope="chat"),
    Action.API_ASSETS_READ: Grant(api_scope="assets:read"),
    Action.API_ASSETS_WRITE: Grant(api_scope="assets:write"),
    Action.API_EXTRACT: Grant(api_scope="extract"),
    Action.API_AUDIT_READ: Grant(api_scope="audit:read", admin_network=True),
}

# The administrators' console: "app_label.model_name" (proxy models included) → operation →
# the action it takes. Operations not listed are refused to everyone.
_VIEW, _ADD, _CHANGE, _DELETE = "view", "add", "change", "delete"
CONSOLE: Mapping[str, Mapping[str, Action]] = {
    # accounts are disabled, never removed: no delete
    "accounts.user": {op: Action.USER_MANAGE for op in (_VIEW, _ADD, _CHANGE)},
    "departments.department": {op: Action.DEPARTMENT_MANAGE for op in (_VIEW, _ADD, _CHANGE)},
    "departments.membership": {op: Action.MEMBERSHIP_MANAGE for op in (_VIEW, _ADD, _CHANGE, _DELETE)},
    # files' metadata for both; the security administrator sets labels (AC-7)
    "assets.asset": {_VIEW: Action.ASSET_METADATA_VIEW, _CHANGE: Action.LABEL_MANAGE},
    # delete = unlock (audited)
    "accounts.loginthrottle": {_VIEW: Action.LOCK_RELEASE, _DELETE: Action.LOCK_RELEASE},
    "accounts.administratorrole": {op: Action.ROLE_ASSIGN for op in (_VIEW, _CHANGE)},
    "accounts.departmentlabel": {op: Action.LABEL_MANAGE for op in (_VIEW, _CHANGE)},
    "accounts.directorygroupmapping": {op: Action.GROUP_MAPPING_MANAGE for op in (_VIEW, _ADD, _CHANGE, _DELETE)},
    "accounts.securitypolicy": {op: Action.SECURITY_POLICY_MANAGE for op in (_VIEW, _ADD, _CHANGE)},
    "compliance.retentionpolicy": {op: Action.RETENTION_MANAGE for op in (_VIEW, _ADD, _CHANGE, _DELETE)},
    "inference.chatpolicy": {op: Action.CHAT_POLICY_MANAGE for op in (_VIEW, _ADD, _CHANGE, _DELETE)},
    # the model registry: approving, activating and rolling back are its own pages (each asks its
    # action); versions are never changed or removed, a new directory is a new version
    "inference.modelversion": {_VIEW: Action.MODEL_REGISTRY_VIEW, _ADD: Action.MODEL_REGISTER},
    "departments.apikey": {op: Action.API_KEY_ADMINISTER for op in (_VIEW, _CHANGE)},
    # the audit trail: read-only for the audit administrator, nobody may change or delete it
    "compliance.auditentry": {_VIEW: Action.AUDIT_VIEW},
    "compliance.auditarchive": {_VIEW: Action.AUDIT_VIEW},
    "compliance.auditanchor": {_VIEW: Action.AUDIT_VIEW},
}
AUDIT_TRAIL_MODELS = frozenset({"compliance.auditentry", "compliance.auditarchive", "compliance.auditanchor"})


# --- the decision ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    allowed: bool
    status: int = 200  # 401, 403 or 404 when refused
    reason: str = ""  # for the audit trail
    message: str = ""  # for the person refused

    def __bool__(self) -> bool:
        return self.allowed


ALLOWED = Decision(True)
# ``owner_id`` of a route-level check, before the object is known: an action granted to owners
# lets the route through for their roles, and the service decides again on the object.
ANY_OWNER = object()


def _refused(status: int, reason: str, message: str) -> Decision:
    return Decision(False, status, reason, message)


def admin_network_allowed(source_ip: str | None) -> bool:
    """IP-1: administration only from ADMIN_ALLOWED_NETWORKS."""
    return address_in(source_ip, settings.ADMIN_ALLOWED_NETWORKS)


_NOT_AN_OPERATOR_REASON = "neither the metrics token nor an administration network"


def operator_request_allowed(source_ip: str | None, operator_token: str | None) -> bool:
    """An operator's request: with the operator token (``operator_token``, the request's bearer
    token, or None), or else from an administration network. A wrong token is refused from
    anywhere; without ``METRICS_TOKEN`` set, only the network counts."""
    token = settings.METRICS_TOKEN
    if token and operator_token is not None:
        return hmac.compare_digest(operator_token.encode(), token.encode())
    return admin_network_allowed(source_ip)


def _bearer_token(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    return header.removeprefix("Bearer ") if header.startswith("Bearer ") else None


def _is_api_key(subject: Any) -> bool:
    return bool(getattr(subject, "is_api_key", False))


def _active(subject: Any) -> bool:
    """A signed-in, active person, or an API key (its authentication refused revoked and expired ones)."""
    if subject is None or not getattr(subject, "is_authenticated", False):
        return False
    return _is_api_key(subject) or bool(subject.is_active)


def department_membership(user: Any, department: Any):
    """The user's membership of an active department, or None (every refusal alike)."""
    from departments.models import Membership

    if not _active(user) or _is_api_key(user) or department is None or not getattr(department, "is_active", True):
        return None
    department_id = getattr(department, "pk", department)
    return (
        Membership.objects.filter(user=user, department_id=department_id, department__is_active=True)
        .select_related("department")
        .first()
    )


def decide(
    subject: Any,
    action: Action,
    *,
    department: Any = None,
    owner_id: Any = None,
    membership: Any = None,
    account: Any = None,
    source_ip: str | None = None,
    check_network: bool = False,
    operator_token: str | None = None,
) -> Decision:
    """May ``subject`` (a user, an API key, anonymous or None) take ``action``?

    ``department`` is the department the action is in (an object's department, or the portal's);
    ``owner_id`` the owner of the object, for actions granted to owners; ``account`` the account
    the action is on, for the grants refused on some accounts (None: a page's check, before the
    account is known). With ``check_network`` the administration network is checked against
    ``source_ip`` first, as every request is, and an operator's action against ``source_ip`` and
    ``operator_token``.
    """
    decision = _grant_decide(
        subject,
        action,
        department=department,
        owner_id=owner_id,
        membership=membership,
        source_ip=source_ip,
        check_network=check_network,
        operator_token=operator_token,
    )
    if not decision or account is None:
        return decision
    grant = POLICY[action]
    if grant.own_account_refused and _same_account(subject, account):
        return _refused(403, "not on one's own account", grant.own_account_refused)
    if grant.administrator_account_refused and _holds_administrator_role(account):
        return _refused(403, "not on an administrator's account", grant.administrator_account_refused)
    return decision


def _same_account(subject: Any, account: Any) -> bool:
    """``subject`` is the person whose account ``account`` is (a proxy model's row included)."""
    if subject is None or _is_api_key(subject) or getattr(subject, "pk", None) is None:
        return False
    return subject.pk == account.pk


def _grant_decide(
    subject: Any,
    action: Action,
    *,
    department: Any,
    owner_id: Any,
    membership: Any,
    source_ip: str | None,
    check_network: bool,
    operator_token: str | None,
) -> Decision:
    """``decide`` on the table's grant alone, before the accounts it is refused on."""
    grant = POLICY[action]
    # An operator's action is a request's, from where it comes: without one, nobody's.
    if grant.operator and not (check_network and operator_request_allowed(source_ip, operator_token)):
        return _refused(404, _NOT_AN_OPERATOR_REASON, OBJECT_REFUSED)
    if grant.public:
        return ALLOWED
    if grant.non_administrators:
        if _holds_administrator_role(subject):
            return _refused(403, _NO_DEPARTMENT_ACCESS_REASON, ADMINISTRATOR_HOLDS_NO_DEPARTMENT_ACCESS)
        return ALLOWED
    if check_network and grant.administration and not admin_network_allowed(source_ip):
        return _refused(404, "administration from outside ADMIN_ALLOWED_NETWORKS", ADMIN_NETWORK_REFUSED)
    if not _active(subject):
        return _refused(401, "not signed in", SIGN_IN_REQUIRED)
    if _is_api_key(subject):
        return _decide_api_key(subject, action, grant, department)
    if grant.signed_in:
        return ALLOWED
    if grant.admin_roles and subject.admin_role in grant.admin_roles:
        return ALLOWED
    if not (grant.department_roles or grant.owner_roles):
        if grant.admin_roles:
            roles = "/".join(sorted(grant.admin_roles))
            return _refused(403, f"requires administrator role {roles}", ADMIN_ROLE_REFUSED)
        return _refused(403, "granted to API keys only", API_KEYS_ONLY)
    if _holds_administrator_role(subject):
        # A membership left from before the upgrade, or written around every guard, opens nothing.
        return _refused(404, _NO_DEPARTMENT_ACCESS_REASON, DEPARTMENT_REFUSED)
    membership = membership if membership is not None else department_membership(subject, department)
    department_id = getattr(department, "pk", department)
    if membership is None or (department is not None and membership.department_id != department_id):
        return _refused(404, "not a member of this department", DEPARTMENT_REFUSED)
    if membership.role in grant.department_roles:
        if grant.department_switch and not _switch_on(grant.department_switch, membership.department):
            return _refused(403, f"the department's policy {grant.department_switch} is off", SWITCH_REFUSED)
        return ALLOWED
    if membership.role in grant.owner_roles:
        if owner_id is ANY_OWNER or (owner_id is not None and owner_id == subject.pk):
            return ALLOWED
        if grant.owner_only_hides:
            return _refused(404, "not the owner of the object", OBJECT_REFUSED)
        return _refused(403, "neither the owner nor a department administrator", OWNER_REFUSED)
    roles = "/".join(sorted(grant.department_roles | grant.owner_roles))
    return _refused(403, f"requires department role {roles}", DEPARTMENT_ROLE_REFUSED)


# Readers of the departments' policy switches, registered by the app that stores each one.
_DEPARTMENT_SWITCHES: dict[str, Callable[[Any], bool]] = {}


def department_switch_register(name: str, reader: Callable[[Any], bool]) -> None:
    _DEPARTMENT_SWITCHES[name] = reader


def _switch_on(name: str, department: Any) -> bool:
    reader = _DEPARTMENT_SWITCHES.get(name)
    return reader is not None and bool(reader(department))


def _decide_api_key(key: Any, action: Action, grant: Grant, department: Any) -> Decision:
    if not grant.api_scope:
        return _refused(403, "not granted to API keys", NOT_FOR_API_KEYS)
    if not key.has_scope(grant.api_scope):
        return _refused(403, f"missing scope {grant.api_scope}", SCOPE_REFUSED.format(scope=grant.api_scope))
    if department is not None and key.department_id != getattr(department, "pk", department):
        return _refused(404, "not found in this department", OBJECT_REFUSED)
    return ALLOWED


def allowed(subject: Any, action: Action, **kwargs: Any) -> bool:
    """``decide`` as a yes/no, for what a page shows (nothing is recorded)."""
    return decide(subject, action, **kwargs).allowed


def is_administrator(user: Any) -> bool:
    """Holds one of the three administrator roles (they need two factors and the console)."""
    return _active(user) and _holds_administrator_role(user)


def administrator_roles() -> frozenset[str]:
    """The three administrator roles, for queries that look for their holders."""
    return frozenset(str(role) for role in POLICY[Action.CONSOLE_ENTER].admin_roles)


def administrators_filter(accounts: QuerySet) -> QuerySet:
    """The accounts of ``accounts`` holding one of the three administrator roles (active or not)."""
    return accounts.filter(admin_role__in=administrator_roles())


def non_administrators_filter(accounts: QuerySet) -> QuerySet:
    """The accounts of ``accounts`` holding none of the three administrator roles."""
    return accounts.exclude(admin_role__in=administrator_roles())


def administrator_role_holders(accounts: QuerySet, role: AdminRole) -> QuerySet:
    """The accounts of ``accounts`` holding administrator role ``role``."""
    if role not in administrator_roles():
        raise ValueError(f"{role!r} is not an administrator role")
    return accounts.filter(admin_role=role)


def administrator_role_grants(role: AdminRole) -> frozenset[Action]:
    """The actions the table grants administrator role ``role``."""
    return frozenset(action for action, grant in POLICY.items() if role in grant.admin_roles)


def administrator_role_alone_granted(action: Action, role: AdminRole) -> bool:
    """Does the table grant ``action`` to administrator role ``role`` and to nobody else (no other
    role, no department role, no API key, no anonymous or merely signed-in visitor)?"""
    grant = POLICY[action]
    others = grant.public or grant.signed_in or grant.department_roles or grant.owner_roles or grant.api_scope
    return grant.admin_roles == frozenset({role}) and not others and not grant.non_administrators


def _holds_administrator_role(account: Any) -> bool:
    """An account with one of the three roles, active or not (a disabled administrator's account
    is still an administrator's: it may be enabled again)."""
    if account is None or _is_api_key(account):
        return False
    return getattr(account, "admin_role", "") in POLICY[Action.CONSOLE_ENTER].admin_roles


_NO_DEPARTMENT_ACCESS_REASON = "an administrator account holds no department access"


def department_access_holder_authorize(
    holder: Any, *, acting_user: Any = None, department: Any = None, **where
) -> None:
    """Raise a recorded refusal unless ``holder`` may be given department data access (a
    membership, a department API key): never an administrator account (SM-1..3, AC-4).

    Services call it before their transaction. The entry names who tried (``acting_user``; None:
    the request's identity) and, as its object, the account that would have held the access.
    """
    decision = decide(holder, Action.DEPARTMENT_ACCESS_HOLD)
    if decision.allowed:
        return
    raise refuse(
        decision,
        action=Action.DEPARTMENT_ACCESS_HOLD,
        actor=acting_user,
        department=department,
        object_type=holder._meta.label_lower,
        object_id=holder.pk,
        object_repr=holder.get_username(),
        **where,
    )


def administrator_role_decide(account: Any, role: str) -> Decision:
    """May ``account`` be given ``role`` (or keep it)? An administrator role only while the account
    holds no department access: its memberships and department API keys go first."""
    if role not in administrator_roles():
        return ALLOWED
    from departments.selectors import department_access_held

    if department_access_held(user=account):
        return _refused(403, "the account holds department access", ROLE_FOR_DEPARTMENT_ACCESS_HOLDER_REFUSED)
    return ALLOWED


def two_factor_reset_decide(subject: Any, account: Any) -> tuple[Action, Decision]:
    """Removing ``account``'s second factor (its owner enrols again): the action it is for
    ``subject``, and may they take it?

    - their own: ``OWN_ACCOUNT``, never an administrator's (two factors are mandatory for them);
    - an administrator's (active or not): ``ADMIN_TWO_FACTOR_RESET``, the security
      administrator's alone: were the system administrator able to reset the audit
      administrator's factor, they could enrol one of their own;
    - anyone else's: ``TWO_FACTOR_RESET``, the system administrator's (the administrator roles
      page lists every account, but its reset is for administrators' factors alone).
    """
    if _same_account(subject, account):
        if _holds_administrator_role(account):
            return Action.OWN_ACCOUNT, _refused(
                403, "an administrator cannot switch two-factor authentication off", TWO_FACTOR_REQUIRED_FOR_ADMINS
            )
        return Action.OWN_ACCOUNT, decide(subject, Action.OWN_ACCOUNT)
    if _holds_administrator_role(account):
        decision = decide(subject, Action.ADMIN_TWO_FACTOR_RESET)
        if decision.status == 403:
            return Action.ADMIN_TWO_FACTOR_RESET, _refused(
                403,
                "an administrator's second factor is reset only by the security administrator",
                ADMIN_TWO_FACTOR_RESET_SECURITY_ONLY,
            )
        return Action.ADMIN_TWO_FACTOR_RESET, decision
    return Action.TWO_FACTOR_RESET, decide(subject, Action.TWO_FACTOR_RESET)


def department_role_grants(role: str) -> frozenset[Action]:
    """The actions a department role is granted (on anything, or on its own objects)."""
    return frozenset(
        action for action, grant in POLICY.items() if role in grant.department_roles or role in grant.owner_roles
    )


def department_role_loses_grants(before: str | None, after: str | None) -> bool:
    """Does moving from role ``before`` to ``after`` take any grant away (a demotion)?"""
    return bool(department_role_grants(before or "") - department_role_grants(after or ""))


def department_role_strongest(roles: list[str]) -> str:
    """The role among ``roles`` with the most grants (directory groups mapping one person twice)."""
    return max(roles, key=lambda role: len(department_role_grants(role)))


def console_permission(user: Any, perm: str) -> bool:
    """``User.has_perm``: ``perm`` is Django's "app_label.codename", e.g. "departments.change_department"."""
    if "." not in perm:
        return False
    app_label, codename = perm.split(".", 1)
    operation, _, model_name = codename.partition("_")
    action = CONSOLE.get(f"{app_label}.{model_name}", {}).get(operation)
    return action is not None and decide(user, action).allowed


def console_module_permission(user: Any, app_label: str) -> bool:
    prefix = f"{app_label}."
    return any(
        label.startswith(prefix) and decide(user, action).allowed
        for label, operations in CONSOLE.items()
        for action in operations.values()
    )


# --- refusals: the one audited path ---------------------------------------------------------------


class Refused(Exception):
    """Mixed into the exceptions a refusal raises: its audit entry exists already."""


class RefusedNotFound(Refused, Http404):
    pass


class RefusedForbidden(Refused, PermissionDenied):
    pass


class SignInRequired(Refused, PermissionDenied):
    pass


def refusal_record(
    *,
    action: str,
    reason: str,
    actor: Any = None,
    department: Any = None,
    object_type: str = "route",
    object_id: Any = "",
    object_repr: str = "",
    path: str = "",
    method: str = "",
    **details: Any,
) -> None:
    """Record one refusal as ``access.denied``, committed on its own.

    Durable: called inside the refused action's transaction it fails loudly (in tests first),
    instead of writing an entry that the action's rollback would take away.
    """
    with transaction.atomic(durable=True):
        audit_record(
            event_type=EventType.ACCESS_DENIED,
            outcome=Outcome.DENIED,
            actor=actor,
            department=department,
            object_type=object_type[:64],
            object_id=str(object_id)[:64],
            object_repr=(object_repr or path)[:255],
            details={
                "action": str(action),
                "reason": reason,
                **({"path": path[:500]} if path else {}),
                **({"method": method} if method else {}),
                **details,
            },
        )


def refusal_exception(decision: Decision) -> Refused:
    if decision.status == 404:
        return RefusedNotFound(decision.message)
    if decision.status == 401:
        return SignInRequired(decision.message)
    return RefusedForbidden(decision.message)


def refuse(decision: Decision, *, action: str, **where: Any) -> Refused:
    """Record ``decision`` (a refusal) and return the exception to raise."""
    refusal_record(action=action, reason=decision.reason, **where)
    return refusal_exception(decision)


def authorize(
    subject: Any,
    action: Action,
    *,
    department: Any = None,
    owner_id: Any = None,
    membership: Any = None,
    obj: Any = None,
    source_ip: str | None = None,
    **where: Any,
) -> None:
    """Raise a recorded refusal unless ``subject`` may take ``action`` (services call this
    before opening their transaction; ``obj`` names the object in the refusal's entry). With
    ``source_ip`` the administration network is checked too, as for a request."""
    decision = decide(
        subject,
        action,
        department=department,
        owner_id=owner_id,
        membership=membership,
        source_ip=source_ip,
        check_network=source_ip is not None,
    )
    if decision.allowed:
        return
    if obj is not None:
        where.setdefault("object_type", obj._meta.label_lower)
        where.setdefault("object_id", obj.pk)
    raise refuse(
        decision,
        action=action,
        actor=subject if _active(subject) else None,
        department=department if decision.status != 404 else None,
        **where,
    )


def _request_decide(request: HttpRequest, action: Action, department: Any, owner_id: Any) -> Decision:
    portal_department = getattr(request, "department", None)
    department = department if department is not None else portal_department
    membership = getattr(request, "membership", None) if department is portal_department else None
    return decide(
        getattr(request, "user", None),
        action,
        department=department,
        owner_id=owner_id,
        membership=membership,
        source_ip=getattr(request, "source_ip", None),
        check_network=True,
        operator_token=_bearer_token(request),
    )


def request_allowed(request: HttpRequest, action: Action) -> bool:
    """``decide`` for a request, as a yes/no for what a response shows (nothing is recorded)."""
    return _request_decide(request, action, None, ANY_OWNER).allowed


def authorize_request(
    request: HttpRequest, action: Action, *, department: Any = None, owner_id: Any = None, obj: Any = None
) -> None:
    """``authorize`` for a request: its user (or API key), address, bearer token, path and portal
    department."""
    portal_department = getattr(request, "department", None)
    department = department if department is not None else portal_department
    decision = _request_decide(request, action, department, owner_id)
    if decision.allowed:
        return
    where: dict[str, Any] = {"path": request.path, "method": request.method}
    if obj is not None:
        where.update(object_type=obj._meta.label_lower, object_id=obj.pk)
    user = getattr(request, "user", None)
    raise refuse(
        decision,
        action=action,
        actor=user if _active(user) else None,
        department=department if decision.status == 403 else None,
        **where,
    )


def requires(action: Action) -> Callable:
    """Bind a view to ``action`` and enforce it: signed-out visitors go to the login page
    (administration routes answer 404 from outside the admin networks even before that)."""
    if POLICY[action].public:
        raise ValueError(f"{action} is public: bind the view with public()")

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            try:
                authorize_request(request, action, owner_id=ANY_OWNER)
            except SignInRequired:
                return redirect_to_login(request.get_full_path())
            return view(request, *args, **kwargs)

        wrapped.policy_action = action
        return wrapped

    return decorator


def public(action: Action) -> Callable:
    """Bind a view to a public action of the table: nothing to enforce (but nothing unbound),
    except an operator's action, refused (404, recorded) to a request that is not an operator's."""
    if not POLICY[action].public:
        raise ValueError(f"{action} is not public")

    def decorator(view: Callable) -> Callable:
        if not POLICY[action].operator:
            view.policy_action = action
            return view

        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            authorize_request(request, action)
            return view(request, *args, **kwargs)

        wrapped.policy_action = action
        return wrapped

    return decorator


def department_entry(request: HttpRequest, slug: str):
    """The membership that lets the request's user into department ``slug``, or a recorded
    refusal (404 for unknown, inactive and not-a-member alike; SignInRequired when signed out)."""
    from departments.selectors import membership_get_for_entry

    user = getattr(request, "user", None)
    membership = membership_get_for_entry(user=user, slug=slug) if _active(user) else None
    department = membership.department if membership is not None else None
    decision = decide(user, Action.DEPARTMENT_ENTER, department=department, membership=membership)
    if decision.allowed:
        return membership
    raise refuse(
        decision,
        action=Action.DEPARTMENT_ENTER,
        actor=user if _active(user) else None,
        department=department if decision.status == 403 else None,
        object_type="departments.department",
        object_repr=slug[:255],
        path=request.path,
        method=request.method,
    )


def object_not_found(
    *,
    action: str,
    subject: Any,
    model: Any,
    object_id: Any,
    reason: str,
    department: Any = None,
    path: str = "",
    exception: type[RefusedNotFound] = RefusedNotFound,
    **details: Any,
) -> RefusedNotFound:
    """A look-up answered 404 because the object is not the caller's to see (another department's,
    another member's private object, or none at all: from outside they look the same)."""
    refusal_record(
        action=action,
        reason=reason,
        actor=subject if _active(subject) else None,
        department=department,
        object_type=model._meta.label_lower,
        object_id=object_id,
        path=path,
        **details,
    )
    return exception(OBJECT_REFUSED)


def department_object_get(request: Any, queryset: Any, object_id: Any, *, action: str, noun: str) -> Any:
    """The object of ``queryset`` (already limited to the request's department) with this id, or
    the recorded 404 of ``object_not_found`` ("no such <noun> in this department")."""
    obj = queryset.filter(pk=object_id).first()
    if obj is None:
        raise object_not_found(
            action=action,
            subject=request.user,
            model=queryset.model,
            object_id=object_id,
            reason=f"no such {noun} in this department",
            department=request.department,
            path=request.path,
        )
    return obj
