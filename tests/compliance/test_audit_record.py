"""The write path of the audit trail: one service, chained, in the caller's transaction."""

import pytest
from django.db import transaction

from compliance.chain import chain_hash
from compliance.events import ActorType, EventType, Outcome
from compliance.models import GENESIS_HASH, AuditChainHead, AuditEntry
from compliance.services import AuditWriteError, audit_record
from departments.models import Department

pytestmark = pytest.mark.django_db


def test_entries_form_a_chain_that_survives_a_database_round_trip(system_context, personas):
    audit_record(event_type=EventType.ASSET_VIEW, department=personas.department_a, details={"n": 1, "z": "身份证"})
    entries = list(AuditEntry.objects.order_by("sequence"))
    assert entries[0].prev_hash == GENESIS_HASH
    for previous, entry in zip(entries, entries[1:], strict=False):
        assert entry.sequence == previous.sequence + 1
        assert entry.prev_hash == previous.hash
    for entry in entries:  # freshly read back from the database
        assert chain_hash(entry.prev_hash, entry) == entry.hash
    head = AuditChainHead.objects.get()
    assert (head.sequence, head.hash) == (entries[-1].sequence, entries[-1].hash)


def test_context_fills_request_fields_and_department(system_context, personas):
    entry = audit_record(event_type=EventType.ASSET_VIEW, actor=personas.member, department=personas.department_a)
    assert entry.actor_type == ActorType.USER and entry.actor_name == "bob"
    assert entry.department_id == personas.department_a.pk and entry.department_slug == "finance"
    assert (entry.request_id, entry.source_ip, entry.user_agent) == ("test-request-0001", "127.0.0.1", "pytest")


def test_commands_are_attributed_to_system(personas):
    entry = audit_record(event_type=EventType.RETENTION_PURGE)
    assert (entry.actor_type, entry.actor_name) == (ActorType.SYSTEM, "system")


def test_action_and_entry_roll_back_together():
    count = AuditEntry.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        department = Department.objects.create(slug="temp", name="Temp")
        audit_record(event_type=EventType.DEPARTMENT_CREATE, department=department)
        raise RuntimeError("the action failed after its entry was written")
    assert AuditEntry.objects.count() == count
    assert not Department.objects.filter(slug="temp").exists()


def test_failed_audit_write_fails_the_action():
    with pytest.raises(AuditWriteError), transaction.atomic():
        Department.objects.create(slug="temp", name="Temp")
        audit_record(event_type=EventType.DEPARTMENT_CREATE, details={"bad": float("nan")})
    assert not Department.objects.filter(slug="temp").exists()


def test_unknown_event_type_or_outcome_is_refused():
    with pytest.raises(AuditWriteError, match="unknown audit event type"):
        audit_record(event_type="made.up")
    with pytest.raises(AuditWriteError, match="unknown audit outcome"):
        audit_record(event_type=EventType.LOGIN, outcome="maybe")


def test_orm_cannot_change_or_delete_entries(personas):
    entry = AuditEntry.objects.first()
    with pytest.raises(PermissionError):
        AuditEntry.objects.all().update(outcome=Outcome.FAILURE)
    with pytest.raises(PermissionError):
        AuditEntry.objects.all().delete()
    with pytest.raises(PermissionError):
        entry.delete()
    entry.outcome = Outcome.FAILURE
    with pytest.raises(PermissionError):
        entry.save()
    with pytest.raises(PermissionError, match="only through"):
        AuditEntry(sequence=999, prev_hash="x", hash="y").save()


@pytest.mark.parametrize(
    "value", [1e20, -1e17, -0.0, 0.0, 3.0, 0.1, 1e-7, 2**63 + 1, "½ 发票 \u2028", [1.5, {"b": None, "a": True}]]
)
def test_details_survive_the_database_round_trip_unchanged(value):
    """jsonb normalises numbers (1e20 comes back as an integer, -0.0 as 0): what is stored and
    hashed must already be in the form the database gives back, or verification cries wolf."""
    entry = audit_record(event_type=EventType.ASSET_VIEW, details={"v": value})
    stored = AuditEntry.objects.get(sequence=entry.sequence)
    assert stored.details == entry.details
    assert chain_hash(stored.prev_hash, stored) == stored.hash
