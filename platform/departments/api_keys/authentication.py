"""How a REST call is let in: API key authentication, per-key throttling, scopes — in one place.

``ApiKeyView`` is the base of every ``/v1/...`` and ``/api/v1/...`` view. Its authentication
class finds the key by the hash of the presented secret, refuses revoked / expired keys and keys
used from outside their allowed networks (bad keys count toward the source address's API-key
lock, a bucket apart from interactive sign-in's: a stale key in one integration must not lock
out the people behind the same address), opens the key's department scope for the rest of the
request and names the key in the audit context. Its permission class asks the policy layer about
the action the view is bound to (``required_action``, or one per HTTP method: each API action
stands for a scope); its throttle counts calls per key and minute in the shared cache. Objects of
another department answer 404 (recorded) through ``scoped_object_get``.
"""

from __future__ import annotations

import math
import time
from contextlib import ExitStack
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import models, transaction
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from accounts.lockout import api_key_failure_record, api_key_lock_active
from accounts.login_policy import current_policy
from accounts.permissions import (
    Action,
    RefusedForbidden,
    RefusedNotFound,
    SignInRequired,
    allowed,
    authorize_request,
    object_not_found,
    refusal_record,
)
from compliance.context import request_context_update
from compliance.events import EventType, Outcome
from compliance.services import audit_record
from departments.api_keys.models import KEY_PREFIX, PREFIX_LENGTH, ApiKey
from departments.api_keys.services import api_key_find
from departments.models import Membership
from departments.tenancy import department_scope

KEY_MISSING = "Authentication required: send the API key as 'Authorization: Bearer mmk_…'."
KEY_INVALID = "Invalid API key."
KEY_REVOKED = "This API key has been revoked."
KEY_EXPIRED = "This API key has expired."
KEY_NETWORK_REFUSED = "This API key may not be used from this network."
KEY_DEPARTMENT_INACTIVE = "This API key's department is inactive."
KEY_CREATOR_UNENTITLED = "This API key's creator no longer holds the rights it was issued under."
ADDRESS_LOCKED = "Too many failed attempts from this address; try again later."
RATE_LIMITED = "Rate limit of {rate} requests per minute exceeded for this API key."
OBJECT_NOT_FOUND = "Not found."
NUL_REFUSED = "Query parameters must not contain NUL characters."

# last_used_at is written at most this often per key: not a database write per request.
LAST_USED_RESOLUTION_SECONDS = 60


# The action named in the refusals of authentication itself (before any route's action applies).
AUTHENTICATE = "api.authenticate"


def _deny(*, key: ApiKey | None, request, reason: str, **details: Any) -> None:
    refusal_record(
        action=AUTHENTICATE,
        reason=reason,
        actor=key,
        department=key.department_id if key else None,
        path=request.path,
        method=request.method,
        **details,
    )


def _lock_cache_key(source_ip: str) -> str:
    return f"api-address-locked:{source_ip}"


def _address_locked_cached(source_ip: str | None) -> bool:
    return bool(source_ip) and cache.get(_lock_cache_key(source_ip)) is not None


def _bad_key(request, *, presented: str, reason: str, message: str) -> exceptions.AuthenticationFailed:
    """Audit and count one failed key (toward the source address's API-key lock)."""
    source_ip = getattr(request, "source_ip", None)
    with transaction.atomic():
        audit_record(
            event_type=EventType.LOGIN_FAILED,
            outcome=Outcome.FAILURE,
            object_type="departments.apikey",
            object_repr=presented[:PREFIX_LENGTH],
            details={"method": "api_key", "reason": reason, "path": request.path[:255]},
        )
        locked = api_key_failure_record(source_ip=source_ip, reason=reason)
    if locked and source_ip:
        cache.set(_lock_cache_key(source_ip), True, timeout=current_policy().login_lockout_seconds)
    return exceptions.AuthenticationFailed(message)


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer mmk_…``; ``request.user`` and ``request.auth`` are the key."""

    keyword = "Bearer"

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'

    def authenticate(self, request):
        try:
            header = get_authorization_header(request).split()
        except UnicodeError:
            raise exceptions.AuthenticationFailed(KEY_INVALID) from None
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(KEY_INVALID)
        try:
            presented = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(KEY_INVALID) from None
        source_ip = getattr(request, "source_ip", None)
        key = api_key_find(raw_key=presented) if presented.startswith(KEY_PREFIX) else None
        now = timezone.now()
        problem = None
        if key is None:
            problem = ("unknown key", KEY_INVALID)
        elif key.is_revoked:
            problem = ("revoked key", KEY_REVOKED)
        elif key.is_expired(now):
            problem = ("expired key", KEY_EXPIRED)
        # The lockout's database rows are read for bad keys, and for good ones only when the
        # shared cache remembers that this path locked the address (so a good key from a locked
        # address is refused too, without a query on every call; an administrator's unlock is
        # seen at the next call because the rows decide).
        locked = False
        if problem is not None or _address_locked_cached(source_ip):
            locked = api_key_lock_active(source_ip=source_ip)
            if not locked and source_ip:
                cache.delete(_lock_cache_key(source_ip))
        if locked:
            _deny(key=key, request=request, reason="source address locked after failed API keys")
            raise exceptions.AuthenticationFailed(ADDRESS_LOCKED)
        if problem is not None:
            raise _bad_key(request, presented=presented, reason=problem[0], message=problem[1])
        if key.department is not None and not key.department.is_active:
            _deny(key=key, request=request, reason="department inactive")
            raise exceptions.AuthenticationFailed(KEY_DEPARTMENT_INACTIVE)
        if not _creator_entitled(key):
            _deny(key=key, request=request, reason="the key's creator was disabled, removed or lost the role")
            raise exceptions.AuthenticationFailed(KEY_CREATOR_UNENTITLED)
        if not key.network_allowed(source_ip):
            _deny(key=key, request=request, reason="source address outside the key's allowed networks")
            raise exceptions.AuthenticationFailed(KEY_NETWORK_REFUSED)
        self._open_scope(request, key)
        request_context_update(api_key=key)
        if key.last_used_at is None or (now - key.last_used_at).total_seconds() > LAST_USED_RESOLUTION_SECONDS:
            key.last_used_at, key.last_used_ip = now, source_ip
            ApiKey._base_manager.filter(pk=key.pk).update(last_used_at=now, last_used_ip=source_ip)
        return key, key

    @staticmethod
    def _open_scope(request, key: ApiKey) -> None:
        stack = getattr(request._request, "_api_scope_stack", None)
        if stack is None:
            raise ImproperlyConfigured("ApiKeyAuthentication is only for views derived from ApiKeyView")
        if key.department is not None:
            stack.enter_context(department_scope(key.department))


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A department API key (mmk_…), created in the department portal or by the "
            "security administrator. Scopes: chat, assets:read, assets:write, extract, audit:read.",
        }


class ApiKeyRateThrottle(BaseThrottle):
    """API_KEY_RATE_PER_MINUTE calls per key per clock minute, counted in the shared cache."""

    def allow_request(self, request, view) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return True
        rate = settings.API_KEY_RATE_PER_MINUTE
        now = time.time()
        counter = f"api-key-rate:{key.pk}:{int(now // 60)}"
        if cache.add(counter, 1, timeout=120):
            count = 1
        else:
            try:
                count = cache.incr(counter)
            except ValueError:  # expired between add and incr
                cache.add(counter, 1, timeout=120)
                count = 1
        if count <= rate:
            return True
        self._wait = max(1, math.ceil(60 - now % 60))
        if count == rate + 1:  # one entry per key and minute, not one per refused call
            _deny(key=key, request=request, reason="rate limit exceeded", rate_per_minute=rate)
        return False

    def wait(self) -> float:
        return getattr(self, "_wait", 60)


class ApiKeyActionPermission(BasePermission):
    """The policy layer's answer for the action the view is bound to, in DRF's exceptions."""

    def has_permission(self, request, view) -> bool:
        try:
            authorize_request(request, view.action_for(request))
        except SignInRequired:
            raise exceptions.NotAuthenticated(KEY_MISSING) from None
        except RefusedNotFound:
            raise exceptions.NotFound(OBJECT_NOT_FOUND) from None
        except RefusedForbidden as refusal:
            raise exceptions.PermissionDenied(str(refusal)) from None
        return True


class ApiKeyView(APIView):
    """Base of every API view: key authentication, throttle, scope check, department scope."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [ApiKeyActionPermission]
    throttle_classes = [ApiKeyRateThrottle]
    required_action: Action | dict[str, Action] | None = None
    http_method_names = ["get", "post", "delete", "head"]  # no OPTIONS/TRACE introspection
    metadata_class = None

    def action_for(self, request) -> Action:
        method = "GET" if request.method == "HEAD" else request.method
        if method.lower() not in self.http_method_names or not hasattr(self, method.lower()):
            # Permissions run before the handler is looked up: answer 405, not a policy question.
            raise exceptions.MethodNotAllowed(request.method)
        action = self.required_action
        if isinstance(action, dict):
            action = action.get(method)
        if action is None:
            raise ImproperlyConfigured(f"{type(self).__name__} is bound to no action for {request.method}")
        return action

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # PostgreSQL cannot store or compare NUL characters: refuse them before any query does.
        for name, values in request.query_params.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                raise exceptions.ParseError(NUL_REFUSED)
        if any("\x00" in str(value) for value in kwargs.values()):
            raise exceptions.NotFound(OBJECT_NOT_FOUND)

    def dispatch(self, request, *args, **kwargs):
        # The department scope opened by the authentication closes when the response is made:
        # streaming bodies reopen it themselves.
        with ExitStack() as stack:
            request._api_scope_stack = stack
            return super().dispatch(request, *args, **kwargs)

    @property
    def api_key(self) -> ApiKey:
        return self.request.auth

    @property
    def department(self):
        return self.request.auth.department


def scoped_object_get(
    model: type[models.Model], *, view: ApiKeyView, lookup: dict[str, Any], purpose: str
) -> models.Model:
    """The object of the key's department, or 404 with an audited denial (another department's
    object, an unknown or malformed id all look the same from outside)."""
    department = view.department
    try:
        obj = model.objects.filter(department=department, **lookup).first()
    except (ValueError, TypeError, ValidationError):
        obj = None
    if obj is not None:
        return obj
    object_not_found(
        action=view.action_for(view.request),
        subject=view.api_key,
        model=model,
        object_id=str(next(iter(lookup.values()), ""))[:64],
        reason="not found in this department",
        department=department,
        path=view.request.path,
        purpose=purpose,
    )
    raise exceptions.NotFound(OBJECT_NOT_FOUND)


_UNREAD = object()


def _creator_entitled(key: ApiKey) -> bool:
    """A key lives only as long as its creator's rights: an audit key while its creator is the
    audit administrator, a department key while its creator is still in that department (never
    an administrator: they hold no department access). Disabling, removing or demoting the
    creator stops the key."""
    creator = key.created_by
    if creator is None or not creator.is_active:
        return False
    if key.is_audit_key:
        return allowed(creator, Action.AUDIT_VIEW)
    # The creator's membership as api_key_find read it with the key (same query); the one
    # policy decides on it. Without that annotation (a key loaded elsewhere) it is looked up.
    role = getattr(key, "creator_department_role", _UNREAD)
    if role is _UNREAD:
        return allowed(creator, Action.DEPARTMENT_ENTER, department=key.department_id)
    if role is None:
        return False
    membership = Membership(user=creator, department=key.department, role=role)
    return allowed(creator, Action.DEPARTMENT_ENTER, department=key.department, membership=membership)
