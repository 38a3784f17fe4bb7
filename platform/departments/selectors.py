"""Reads of departments and memberships; always relative to a requester."""

from __future__ import annotations

from django.db.models import QuerySet

from departments.models import Membership


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


def department_access_held(*, user) -> list[str]:
    """What department data access ``user`` holds, one line each: memberships and live (not
    revoked) department API keys they own. Empty for an account that holds none."""
    from departments.api_keys.models import ApiKey
    from departments.tenancy import all_departments

    if user is None or user.pk is None:
        return []
    held = [
        f"membership {slug} ({role})"
        for slug, role in Membership.objects.filter(user=user)
        .order_by("department__slug")
        .values_list("department__slug", "role")
    ]
    with all_departments(reason="the API keys an account owns, in every department"):
        keys = (
            ApiKey.objects.filter(created_by=user, department__isnull=False, revoked_at__isnull=True)
            .order_by("prefix")
            .values_list("prefix", "department__slug")
        )
        held += [f"API key {prefix}… ({slug})" for prefix, slug in keys]
    return held


def administrators_holding_department_access() -> dict[str, list[str]]:
    """{administrator's user name: the department access they hold} — empty when the separation
    of duties holds (SM-1..3). Nothing should ever be listed: the services, the console and the
    database refuse it; this is the live check of that (``manage.py compliance_report``)."""
    from django.contrib.auth import get_user_model

    from accounts.permissions import administrator_roles

    administrators = get_user_model().objects.filter(admin_role__in=administrator_roles()).order_by("username")
    found = {}
    for user in administrators:
        held = department_access_held(user=user)
        if held:
            found[user.get_username()] = held
    return found
