"""The database itself refuses to change the audit tables (raw SQL, no model method involved)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from compliance import triggers
from compliance.events import EventType
from compliance.services import audit_record
from tests.compliance.conftest import raw_sql

pytestmark = pytest.mark.django_db


@pytest.fixture
def entries(system_context):
    for number in range(3):
        audit_record(event_type=EventType.ASSET_VIEW, details={"n": number})


def refused(sql: str, params: tuple = ()) -> None:
    with pytest.raises(DatabaseError), transaction.atomic():
        raw_sql(sql, params)


def test_update_is_refused(entries):
    refused("UPDATE compliance_auditentry SET outcome = 'failure' WHERE sequence = 2")
    refused("UPDATE compliance_auditentry SET format_version = 3 WHERE sequence = 2")


def test_delete_of_a_young_entry_is_refused(entries):
    refused("DELETE FROM compliance_auditentry WHERE sequence = 2")
    refused("DELETE FROM compliance_auditentry")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="TRUNCATE exists on PostgreSQL only (SQLite: DELETE)")
def test_truncate_is_refused(entries):
    refused("TRUNCATE compliance_auditentry")
    refused("TRUNCATE compliance_auditchainhead CASCADE")


def test_insert_must_extend_the_chain_head(entries):
    ((head_sequence, head_hash),) = raw_sql("SELECT sequence, hash FROM compliance_auditchainhead")
    columns = (
        "sequence, timestamp, actor_type, actor_id, actor_name, department_slug, event_type, outcome, object_type, "
        "object_id, object_repr, user_agent, request_id, details, prev_hash, hash"
    )
    values = "%s, CURRENT_TIMESTAMP, 'system', '', 'x', '', 'auth.login', 'success', '', '', '', '', '', '{}', %s, %s"
    sql = f"INSERT INTO compliance_auditentry ({columns}) VALUES ({values})"  # noqa: S608  (test SQL from constants)
    refused(sql, (head_sequence + 5, head_hash, "f" * 64))  # a gap
    refused(sql, (head_sequence + 1, "e" * 64, "f" * 64))  # does not link to the head


def test_chain_head_only_moves_forward(entries):
    refused("UPDATE compliance_auditchainhead SET sequence = 1")
    refused("UPDATE compliance_auditchainhead SET hash = %s", ("a" * 64,))
    refused("DELETE FROM compliance_auditchainhead")


def test_archive_and_anchor_tables_are_append_only(entries):
    from compliance.models import AuditAnchor, AuditArchive

    archive = AuditArchive.objects.create(format="jsonl", file_name="f", sha256="0" * 64, entry_count=0)
    AuditAnchor.objects.create(sequence=1, hash="0" * 64, archive=archive, removed=0)
    refused("UPDATE compliance_auditarchive SET complete = %s", (True,))
    refused("DELETE FROM compliance_auditarchive")
    refused("UPDATE compliance_auditanchor SET sequence = 2")
    refused("DELETE FROM compliance_auditanchor")


def test_trigger_floor_is_the_legal_floor():
    assert triggers.FLOOR_DAYS == settings.AUDIT_RETENTION_FLOOR_DAYS
