"""Writes to departments and memberships; each records its audit entry in the same transaction."""

from __future__ import annotations

from django.db import transaction

from accounts.permissions import Action, authorize, department_access_holder_authorize
from accounts.roles import MembershipRole
from compliance.events import EventType
from compliance.services import audit_record
from departments.models import Classification, Department, Membership, MembershipSource


@transaction.atomic
def department_create(
    *, slug: str, name: str, classification: int = Classification.INTERNAL, acting_user=None
) -> Department:
    department = Department(slug=slug, name=name, classification=classification)
    department.full_clean()
    department.save()
    audit_record(
        event_type=EventType.DEPARTMENT_CREATE,
        actor=acting_user,
        department=department,
        obj=department,
        details={"slug": slug, "name": name, "classification": int(classification)},
    )
    return department


def membership_add(
    *,
    user,
    department: Department,
    role: str = MembershipRole.MEMBER,
    source: str = MembershipSource.MANUAL,
    acting_user=None,
) -> Membership:
    """Give ``user`` access to ``department``. Refused (and recorded, before the transaction) for an
    administrator account, and for a person who may not manage memberships."""
    _grantor_authorize(acting_user, department=department)
    department_access_holder_authorize(user, acting_user=acting_user, department=department)
    with transaction.atomic():
        membership = Membership(user=user, department=department, role=role, source=source)
        membership.full_clean()
        membership.save()
        audit_record(
            event_type=EventType.MEMBERSHIP_ADD,
            actor=acting_user,
            department=department,
            obj=membership,
            details={"user": user.get_username(), "role": role, "source": source},
        )
    return membership


def _grantor_authorize(acting_user, *, department: Department) -> None:
    """A person granting department access must hold the grant for it (the security administrator);
    the platform itself (``"system"``: the directory mapping, commands) acts on configured policy."""
    if hasattr(acting_user, "get_username"):
        authorize(acting_user, Action.MEMBERSHIP_MANAGE, object_type="departments.department", object_id=department.pk)


def membership_remove(*, membership: Membership, acting_user=None) -> None:
    """Remove ``membership``, audited; Membership.DoesNotExist (nothing recorded) when another
    request removed it first."""
    department = membership.department
    _grantor_authorize(acting_user, department=department)
    with transaction.atomic():
        if not Membership.objects.select_for_update().filter(pk=membership.pk).exists():
            raise Membership.DoesNotExist(f"membership {membership.pk} was removed already")
        details = {"user": membership.user.get_username(), "role": membership.role, "source": membership.source}
        audit_record(
            event_type=EventType.MEMBERSHIP_REMOVE,
            actor=acting_user,
            department=department,
            obj=membership,
            details=details,
        )
        membership.delete()


def membership_change_role(*, membership: Membership, role: str, acting_user=None) -> Membership:
    _grantor_authorize(acting_user, department=membership.department)
    department_access_holder_authorize(membership.user, acting_user=acting_user, department=membership.department)
    with transaction.atomic():
        before = membership.role
        membership.role = role
        membership.full_clean()
        membership.save(update_fields=["role"])
        audit_record(
            event_type=EventType.MEMBERSHIP_CHANGE,
            actor=acting_user,
            department=membership.department,
            obj=membership,
            details={"user": membership.user.get_username(), "before": {"role": before}, "after": {"role": role}},
        )
    return membership
