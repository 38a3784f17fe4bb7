"""The database itself refuses to change the audit tables (raw SQL, no model method involved)."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from compliance import triggers
from compliance.events import EventType
from compliance.services import audit_record
from tests.compliance.conftest import raw_sql

pytestmark = pytest.mark.django_db

# What the triggers say, from compliance/triggers.py (the same constants write the trigger SQL).
POSTGRESQL = connection.vendor == "postgresql"


def said(template: str, **fields: str) -> str:
    """A trigger's message as a pattern: its text exactly, each ``{field}`` the pattern given."""
    pattern = re.escape(template)
    for name, field_pattern in fields.items():
        pattern = pattern.replace(re.escape(f"{{{name}}}"), field_pattern)
    return pattern


ENTRY_UPDATE_REFUSED = re.escape(triggers.ENTRY_APPEND_ONLY.format(operation="UPDATE"))
ENTRY_DELETE_REFUSED = re.escape(triggers.DELETE_REFUSED)
# PostgreSQL names the entry, SQLite cannot.
CHAIN_NOT_EXTENDED = said(triggers.CHAIN_NOT_EXTENDED, sequence=r"\d+ " if POSTGRESQL else "")
HEAD_MOVES_FORWARD_ONLY = re.escape(
    triggers.HEAD_REFUSED.format(operation="UPDATE") if POSTGRESQL else triggers.HEAD_MOVES_FORWARD_ONLY
)
HEAD_NOT_DELETED = re.escape(
    triggers.HEAD_REFUSED.format(operation="DELETE") if POSTGRESQL else triggers.HEAD_NOT_DELETED
)


def append_only(table: str, operation: str) -> str:
    return re.escape(triggers.APPEND_ONLY.format(table=table, operation=operation))


@pytest.fixture
def entries(system_context):
    for number in range(3):
        audit_record(event_type=EventType.ASSET_VIEW, details={"n": number})


def refused(sql: str, params: tuple = (), *, match: str) -> None:
    with pytest.raises(DatabaseError, match=match), transaction.atomic():
        raw_sql(sql, params)


def test_update_is_refused(entries):
    refused("UPDATE compliance_auditentry SET outcome = 'failure' WHERE sequence = 2", match=ENTRY_UPDATE_REFUSED)
    refused("UPDATE compliance_auditentry SET format_version = 3 WHERE sequence = 2", match=ENTRY_UPDATE_REFUSED)


def test_delete_of_a_young_entry_is_refused(entries):
    refused("DELETE FROM compliance_auditentry WHERE sequence = 2", match=ENTRY_DELETE_REFUSED)
    refused("DELETE FROM compliance_auditentry", match=ENTRY_DELETE_REFUSED)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="TRUNCATE exists on PostgreSQL only (SQLite: DELETE)")
def test_truncate_is_refused(entries):
    refused("TRUNCATE compliance_auditentry", match=append_only("compliance_auditentry", "TRUNCATE"))
    refused("TRUNCATE compliance_auditchainhead CASCADE", match=append_only("compliance_auditchainhead", "TRUNCATE"))


def test_insert_must_extend_the_chain_head(entries):
    ((head_sequence, head_hash),) = raw_sql("SELECT sequence, hash FROM compliance_auditchainhead")
    columns = (
        "sequence, timestamp, actor_type, actor_id, actor_name, department_slug, event_type, outcome, object_type, "
        "object_id, object_repr, user_agent, request_id, details, prev_hash, hash"
    )
    values = "%s, CURRENT_TIMESTAMP, 'system', '', 'x', '', 'auth.login', 'success', '', '', '', '', '', '{}', %s, %s"
    sql = f"INSERT INTO compliance_auditentry ({columns}) VALUES ({values})"  # noqa: S608  (test SQL from constants)
    refused(sql, (head_sequence + 5, head_hash, "f" * 64), match=CHAIN_NOT_EXTENDED)  # a gap
    refused(sql, (head_sequence + 1, "e" * 64, "f" * 64), match=CHAIN_NOT_EXTENDED)  # does not link to the head


def test_chain_head_only_moves_forward(entries):
    refused("UPDATE compliance_auditchainhead SET sequence = 1", match=HEAD_MOVES_FORWARD_ONLY)
    refused("UPDATE compliance_auditchainhead SET hash = %s", ("a" * 64,), match=HEAD_MOVES_FORWARD_ONLY)
    refused("DELETE FROM compliance_auditchainhead", match=HEAD_NOT_DELETED)


def test_archive_and_anchor_tables_are_append_only(entries):
    from compliance.models import AuditAnchor, AuditArchive

    archive = AuditArchive.objects.create(format="jsonl", file_name="f", sha256="0" * 64, entry_count=0)
    AuditAnchor.objects.create(sequence=1, hash="0" * 64, archive=archive, removed=0)
    refused(
        "UPDATE compliance_auditarchive SET complete = %s",
        (True,),
        match=append_only("compliance_auditarchive", "UPDATE"),
    )
    refused("DELETE FROM compliance_auditarchive", match=append_only("compliance_auditarchive", "DELETE"))
    refused("UPDATE compliance_auditanchor SET sequence = 2", match=append_only("compliance_auditanchor", "UPDATE"))
    refused("DELETE FROM compliance_auditanchor", match=append_only("compliance_auditanchor", "DELETE"))


def test_trigger_floor_is_the_legal_floor():
    assert triggers.FLOOR_DAYS == settings.AUDIT_RETENTION_FLOOR_DAYS
