"""The upgrade (departments.0003): administrator accounts that hold department access from an
older release lose it — memberships deleted, department API keys revoked — each change audited;
the database's guard is installed afterwards, and nobody else's access is touched."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from accounts.roles import AdminRole, MembershipRole
from compliance.events import EventType
from compliance.models import AuditEntry
from compliance.report import PASS, compliance_report_build
from departments.api_keys.models import ApiKey, key_generate, key_hash
from departments.models import Membership
from departments.tenancy import all_departments
from departments.triggers import triggers_missing

BEFORE = ("departments", "0002_api_keys")
UPGRADE = ("departments", "0003_administrators_hold_no_department_access")


def _migrate(target) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])


def _key(*, department, created_by, name: str) -> ApiKey:
    raw = key_generate()
    key = ApiKey(
        department=department,
        name=name,
        prefix=raw[:12],
        secret_hash=key_hash(raw),
        scopes=["audit:read"] if department is None else ["chat"],
        expires_at=timezone.now() + timedelta(days=3650),
        created_by=created_by,
        created_by_name=created_by.username,
    )
    with all_departments(reason="a test writes keys as an older release could"):
        key.save()
    return key


@pytest.fixture
def whole_schema_after():
    """Taking departments back unapplies every migration that depends on it (in other apps too):
    every app is migrated forward again afterwards, whatever the test's outcome."""
    yield
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_upgrade_withdraws_administrators_department_access_and_audits_it(personas, make_user, whole_schema_after):
    _migrate(BEFORE)  # an installation from before this release: no guard in the database
    assert triggers_missing(connection)
    sysadmin = make_user("sysadmin", admin_role=AdminRole.SYSTEM)
    secadmin = make_user("secadmin", admin_role=AdminRole.SECURITY)
    auditor = make_user("auditor", admin_role=AdminRole.AUDIT)
    finance, quality = personas.department_a, personas.department_b
    Membership.objects.create(user=sysadmin, department=finance, role=MembershipRole.ADMIN)
    Membership.objects.create(user=auditor, department=quality, role=MembershipRole.MEMBER)
    sysadmin_key = _key(department=finance, created_by=sysadmin, name="10-year key")
    secadmin_key = _key(department=quality, created_by=secadmin, name="MES")
    audit_key = _key(department=None, created_by=auditor, name="SIEM")  # the auditor's own: kept
    member_key = _key(department=finance, created_by=personas.admin, name="ERP")  # a person's: kept
    before = AuditEntry.objects.count()

    _migrate(UPGRADE)

    assert not Membership.objects.filter(user__in=[sysadmin, secadmin, auditor]).exists()
    assert Membership.objects.filter(user__in=[personas.admin, personas.member, personas.outsider]).count() == 3
    with all_departments(reason="test"):
        keys = {key.pk: key for key in ApiKey.objects.all()}
    assert keys[sysadmin_key.pk].revoked_at is not None and keys[secadmin_key.pk].revoked_at is not None
    assert keys[sysadmin_key.pk].revoked_by_name == "system"
    assert keys[audit_key.pk].revoked_at is None and keys[member_key.pk].revoked_at is None

    entries = AuditEntry.objects.order_by("sequence")[before:]
    removed = {(e.department_slug, e.details["user"]) for e in entries if e.event_type == EventType.MEMBERSHIP_REMOVE}
    revoked = {e.details["prefix"] for e in entries if e.event_type == EventType.API_KEY_REVOKE}
    assert removed == {("finance", "sysadmin"), ("quality", "auditor")}
    assert revoked == {sysadmin_key.prefix, secadmin_key.prefix}
    assert all(e.actor_name == "system" and "upgrade" in e.details["reason"] for e in entries)

    # The guard is in place, and the live check of the compliance report passes.
    assert triggers_missing(connection) == []
    ac4 = next(result for result in compliance_report_build().results if result.control == "AC-4")
    assert ac4.status == PASS, ac4.evidence
