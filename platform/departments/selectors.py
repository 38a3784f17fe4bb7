"""Reads of departments and memberships; always relative to a requester."""

from __future__ import annotations

from django.db.models import QuerySet

from departments.models import Department, Membership


def membership_list_for_user(*, user) -> QuerySet[Membership]:
    """The active departments a user can enter, for the picker."""
    if not user.is_authenticated or not user.is_active:
        return Membership.objects.none()
    return (
        Membership.objects.filter(user=user, department__is_active=True)
        .select_related("department")
        .order_by("department__name")
    )


def membership_get_for_entry(*, user, slug: str) -> Membership | None:
    """The membership that lets ``user`` into the department ``slug``, or None.

    None covers every refusal alike (unknown slug, inactive department, not a member, inactive
    user) so that callers answer them all with the same 404 and leak nothing.
    """
    if not user.is_authenticated or not user.is_active:
        return None
    return (
        Membership.objects.filter(user=user, department__slug=slug, department__is_active=True)
        .select_related("department")
        .first()
    )


def department_list_active() -> QuerySet[Department]:
    return Department.objects.filter(is_active=True)
