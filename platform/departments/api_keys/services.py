"""Creating and revoking API keys (audited in the same transaction); see ``api_keys``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from accounts.permissions import department_access_holder_authorize
from compliance.events import EventType
from compliance.services import audit_record
from departments.api_keys.models import PREFIX_LENGTH, ApiKey, key_generate, key_hash
from departments.models import Department
from departments.tenancy import all_departments, department_scope


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    raw_key: str  # shown once to its creator, never stored


def _username(user: Any) -> str:
    return user.get_username() if hasattr(user, "get_username") else str(user or "system")


def api_key_create(
    *,
    department: Department | None,
    name: str,
    scopes: list[str],
    created_by: Any,
    expires_at=None,
    allowed_networks: list[str] | None = None,
    acting_user: Any = None,
) -> CreatedKey:
    """A new key; ``created_by`` owns it (for audit keys: the audit administrator). A department
    key is department data access: refused (and recorded) for an administrator account."""
    if department is not None and hasattr(created_by, "get_username"):
        department_access_holder_authorize(
            created_by, acting_user=acting_user if acting_user is not None else created_by, department=department
        )
    with transaction.atomic():
        raw = key_generate()
        key = ApiKey(
            department=department,
            name=name,
            prefix=raw[:PREFIX_LENGTH],
            secret_hash=key_hash(raw),
            scopes=sorted(set(scopes)),
            allowed_networks=[str(value).strip() for value in (allowed_networks or []) if str(value).strip()],
            expires_at=expires_at or timezone.now() + timedelta(days=settings.API_KEY_DEFAULT_DAYS),
            created_by=created_by if getattr(created_by, "pk", None) and hasattr(created_by, "get_username") else None,
            created_by_name=_username(created_by),
        )
        with all_departments(reason="an API key's prefix and hash are unique across departments"):
            key.full_clean()
            key.save()
        audit_record(
            event_type=EventType.API_KEY_CREATE,
            actor=acting_user if acting_user is not None else created_by,
            department=department,
            obj=key,
            details={
                "prefix": key.prefix,
                "name": name,
                "scopes": key.scopes,
                "expires_at": key.expires_at.isoformat(),
                "allowed_networks": key.allowed_networks,
                "created_by": key.created_by_name,
            },
        )
    return CreatedKey(key, raw)


@transaction.atomic
def api_key_revoke(*, key: ApiKey, acting_user: Any) -> ApiKey:
    if key.revoked_at is not None:
        return key
    key.revoked_at = timezone.now()
    key.revoked_by_name = _username(acting_user)
    ApiKey._base_manager.filter(pk=key.pk).update(revoked_at=key.revoked_at, revoked_by_name=key.revoked_by_name)
    audit_record(
        event_type=EventType.API_KEY_REVOKE,
        actor=acting_user,
        department=key.department_id,
        obj=key,
        details={"prefix": key.prefix, "name": key.name},
    )
    return key


def api_key_list(*, department: Department) -> QuerySet[ApiKey]:
    with department_scope(department):
        return ApiKey.objects.filter(department=department).order_by("-created_at")


def api_key_find(*, raw_key: str) -> ApiKey | None:
    """The key with this secret, whatever its department (authentication comes before any scope).

    One query: the key, its department, its creator, and the creator's role in the key's
    department (``creator_department_role``, None without a membership) — what authentication
    decides the creator's entitlement from, on every call."""
    from departments.models import Membership

    creator_role = Membership.objects.filter(user=OuterRef("created_by"), department=OuterRef("department"))
    with all_departments(reason="authenticate an API key by the hash of its secret"):
        return (
            ApiKey.objects.select_related("department", "created_by")
            .annotate(creator_department_role=Subquery(creator_role.values("role")[:1]))
            .filter(secret_hash=key_hash(raw_key))
            .first()
        )
