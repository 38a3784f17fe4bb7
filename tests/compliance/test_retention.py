"""Retention: business purgers per department policy; audit entries only when old AND exported."""

from __future__ import annotations

import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.db import DatabaseError, transaction
from django.utils import timezone

from compliance import retention, services
from compliance.checkpoints import KIND_ANCHOR, checkpoints_read
from compliance.events import EventType
from compliance.export import audit_export
from compliance.models import AuditAnchor, AuditArchive, AuditEntry
from compliance.services import audit_record
from compliance.triggers import DELETE_REFUSED
from compliance.verification import BreakKind, audit_chain_verify
from tests.compliance.conftest import raw_sql

pytestmark = pytest.mark.django_db


@pytest.fixture
def old_then_new(monkeypatch, system_context):
    """Entries 1..4 written 400 days ago, then 5..6 now."""
    long_ago = timezone.now() - timedelta(days=400)
    monkeypatch.setattr(services, "timezone", SimpleNamespace(now=lambda: long_ago))
    for number in range(4):
        audit_record(event_type=EventType.ASSET_VIEW, details={"old": number})
    monkeypatch.undo()
    for number in range(2):
        audit_record(event_type=EventType.ASSET_VIEW, details={"new": number})


def test_audit_entries_are_kept_until_exported(old_then_new, settings):
    settings.AUDIT_RETENTION_DAYS = 180
    report = retention.purge_expired()
    assert report.audit_removed == 0 and AuditEntry.objects.count() == 6
    with pytest.raises(DatabaseError, match=re.escape(DELETE_REFUSED)), transaction.atomic():
        raw_sql("DELETE FROM compliance_auditentry WHERE sequence = 1")  # old but not exported


def test_purge_after_export_cuts_at_an_anchor_and_verification_starts_there(old_then_new, settings, tmp_path):
    settings.AUDIT_RETENTION_DAYS = 180
    audit_export(output=tmp_path / "archive.jsonl")  # entries 1..6 (+ the export's own entry 7)
    report = retention.purge_expired(dry_run=True)
    assert (report.audit_removed, report.audit_anchor) == (4, 4) and AuditEntry.objects.count() == 7
    report = retention.purge_expired()
    assert (report.audit_removed, report.audit_anchor) == (4, 4)
    assert list(AuditEntry.objects.values_list("sequence", flat=True)) == [5, 6, 7, 8]
    anchor = AuditAnchor.objects.get()
    assert anchor.sequence == 4 and AuditEntry.objects.get(sequence=5).prev_hash == anchor.hash
    purge_entry = AuditEntry.objects.get(sequence=8)
    assert purge_entry.event_type == EventType.AUDIT_PURGE and purge_entry.details["removed"] == 4
    assert any(c.kind == KIND_ANCHOR and c.sequence == 4 and c.valid for c in checkpoints_read())
    result = audit_chain_verify()
    assert result.ok and (result.first_sequence, result.anchor_sequence) == (5, 4), result.message
    # Idempotent, and young entries stay undeletable even below... nothing: they are not anchored.
    assert retention.purge_expired().audit_removed == 0
    with pytest.raises(DatabaseError, match=re.escape(DELETE_REFUSED)), transaction.atomic():
        raw_sql("DELETE FROM compliance_auditentry WHERE sequence = 5")


def test_a_young_entry_cannot_be_deleted_even_when_exported_and_anchored(system_context, tmp_path):
    audit_record(event_type=EventType.ASSET_VIEW)
    audit_export(output=tmp_path / "a.jsonl")
    AuditAnchor.objects.create(sequence=1, hash="0" * 64, archive=AuditArchive.objects.get(), removed=1)
    with pytest.raises(DatabaseError, match=re.escape(DELETE_REFUSED)), transaction.atomic():
        raw_sql("DELETE FROM compliance_auditentry WHERE sequence = 1")


def test_an_anchor_missing_from_the_signed_log_is_a_break(old_then_new, settings, tmp_path):
    audit_export(output=tmp_path / "archive.jsonl")
    audit_record(event_type=EventType.LOGIN)
    from compliance.checkpoints import checkpoint_sign

    checkpoint_sign(sequence=1, hash=AuditEntry.objects.get(sequence=1).hash)  # the log exists
    AuditAnchor.objects.create(sequence=2, hash="0" * 64, archive=AuditArchive.objects.get(), removed=2)
    result = audit_chain_verify()
    assert (result.ok, result.break_kind, result.break_sequence) == (False, BreakKind.ANCHOR_UNSIGNED, 3)


@pytest.fixture
def recorded_purger():
    calls = []

    def purge_things(*, department, policy, cutoff, dry_run):
        calls.append(SimpleNamespace(department=department.slug, cutoff=cutoff, dry_run=dry_run, policy=policy))
        return 0 if len([c for c in calls if not c.dry_run]) > 1 else 3  # a second real run finds nothing

    retention.register_purger("test.things", purge_things, days_field="conversation_days")
    yield calls
    retention.unregister_purger("test.things")


def test_business_purge_follows_each_policy_and_respects_legal_hold(personas, recorded_purger, capsys):
    retention.retention_policy_set(department=personas.department_a, conversation_days=30, file_days=None)
    retention.retention_policy_set(
        department=personas.department_b, conversation_days=1, file_days=None, legal_hold=True
    )
    changed = AuditEntry.objects.filter(event_type=EventType.RETENTION_POLICY_CHANGE).order_by("sequence")
    assert changed.first().details["after"]["conversation_days"] == 30
    before = timezone.now()
    call_command("purge_expired", "--dry-run")
    assert [(c.department, c.dry_run) for c in recorded_purger] == [("finance", True)]
    assert not AuditEntry.objects.filter(event_type=EventType.RETENTION_PURGE).exists()
    report = retention.purge_expired()
    call = recorded_purger[-1]
    assert (call.department, call.dry_run) == ("finance", False)
    assert before - timedelta(days=30, seconds=5) < call.cutoff < timezone.now() - timedelta(days=30)
    assert report.business == {"finance": {"test.things": 3}} and report.held == ["quality"]
    entry = AuditEntry.objects.get(event_type=EventType.RETENTION_PURGE)
    assert entry.department_slug == "finance" and entry.details["removed"] == 3
    assert entry.details["purger"] == "test.things"
    assert retention.purge_expired().business == {}  # idempotent: nothing left
    assert "legal hold" in capsys.readouterr().out


def test_registering_needs_a_known_policy_field():
    with pytest.raises(ValueError, match="days_field"):
        retention.register_purger("x", lambda **kwargs: 0, days_field="forever")
