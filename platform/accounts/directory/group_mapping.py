"""Directory groups drive department memberships: applied at every login and by ``ldap_sync``.

Only memberships with ``source=directory`` are ever removed or re-roled here; memberships an
administrator added by hand (``source=manual``) are left alone, whatever the directory says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction

from accounts.models import DirectoryGroupMapping
from accounts.permissions import department_access_holder_authorize, department_role_strongest
from compliance.events import EventType
from compliance.services import audit_record
from departments.models import Department, Membership, MembershipSource
from departments.services import membership_add, membership_change_role, membership_remove

UNKNOWN_DEPARTMENT = "LDAP_GROUP_MAPPINGS_FILE names an unknown department: {slug}"


def normalise_dn(dn: str) -> str:
    """Lower case, no spaces around separators: DNs from the directory compare as typed ones."""
    dn = re.sub(r"\s*([,=+])\s*", r"\1", (dn or "").strip())
    return dn.lower()


@dataclass
class MembershipChanges:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def desired_memberships(group_dns: Iterable[str]) -> dict[int, str]:
    """{department id: role} from the mappings of the given groups; the strongest role wins."""
    normalised = {normalise_dn(dn) for dn in group_dns}
    desired: dict[int, str] = {}
    if not normalised:
        return desired
    for mapping in DirectoryGroupMapping.objects.filter(group_dn__in=normalised, department__is_active=True):
        current = desired.get(mapping.department_id)
        desired[mapping.department_id] = (
            mapping.role if current is None else department_role_strongest([current, mapping.role])
        )
    return desired


def memberships_apply(*, user, group_dns: Iterable[str], acting_user="system") -> MembershipChanges:
    """Make the user's directory memberships match their groups now; audited per change.

    An administrator account is given nothing, whatever its groups: refused and recorded before
    the transaction (administrators are local accounts, so the directory backends never get here
    with one; this is the service's own guard)."""
    desired = desired_memberships(group_dns)
    if desired:
        department_access_holder_authorize(
            user, acting_user=acting_user, source=MembershipSource.DIRECTORY, groups=sorted(set(group_dns))[:20]
        )
    with transaction.atomic():
        return _memberships_apply(user=user, desired=desired, acting_user=acting_user)


def _memberships_apply(*, user, desired: dict[int, str], acting_user) -> MembershipChanges:
    changes = MembershipChanges()
    existing = {m.department_id: m for m in Membership.objects.select_related("department").filter(user=user)}
    for department_id, membership in existing.items():
        if membership.source != MembershipSource.DIRECTORY:
            continue  # manual memberships are kept, whatever the directory says
        role = desired.get(department_id)
        if role is None:
            try:
                membership_remove(membership=membership, acting_user=acting_user)
            except Membership.DoesNotExist:
                continue  # another sign-in of the same person removed it first
            changes.removed.append(membership.department.slug)
        elif role != membership.role:
            membership_change_role(membership=membership, role=role, acting_user=acting_user)
            changes.changed.append(membership.department.slug)
    departments = Department.objects.in_bulk([d for d in desired if d not in existing])
    for department_id, department in departments.items():
        membership_add(
            user=user,
            department=department,
            role=desired[department_id],
            source=MembershipSource.DIRECTORY,
            acting_user=acting_user,
        )
        changes.added.append(department.slug)
    return changes


@transaction.atomic
def mappings_seed_from_settings(*, acting_user="system") -> list[DirectoryGroupMapping]:
    """Create the mappings of LDAP_GROUP_MAPPINGS_FILE that do not exist yet (never overwrites)."""
    created = []
    for item in settings.LDAP_GROUP_MAPPINGS:
        department = Department.objects.filter(slug=item["department"]).first()
        if department is None:
            raise ValueError(UNKNOWN_DEPARTMENT.format(slug=item["department"]))
        group_dn = normalise_dn(item["group"])
        if DirectoryGroupMapping.objects.filter(group_dn=group_dn, department=department).exists():
            continue
        mapping = DirectoryGroupMapping(group_dn=group_dn, department=department, role=item["role"])
        mapping.full_clean()
        mapping.save()
        audit_record(
            event_type=EventType.GROUP_MAPPING_CHANGE,
            actor=acting_user,
            department=department,
            obj=mapping,
            details={"action": "add", "after": {"group_dn": group_dn, "role": item["role"]}, "seeded": True},
        )
        created.append(mapping)
    return created
