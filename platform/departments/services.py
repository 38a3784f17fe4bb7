"""Writes to departments and memberships; each records its audit entry in the same transaction."""

from __future__ import annotations

from django.db import transaction

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


@transaction.atomic
def membership_add(
    *,
    user,
    department: Department,
    role: str = MembershipRole.MEMBER,
    source: str = MembershipSource.MANUAL,
    acting_user=None,
) -> Membership:
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


@transaction.atomic
def membership_remove(*, membership: Membership, acting_user=None) -> None:
    department = membership.department
    details = {"user": membership.user.get_username(), "role": membership.role, "source": membership.source}
    audit_record(
        event_type=EventType.MEMBERSHIP_REMOVE,
        actor=acting_user,
        department=department,
        obj=membership,
        details=details,
    )
    membership.delete()


@transaction.atomic
def membership_change_role(*, membership: Membership, role: str, acting_user=None) -> Membership:
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
