"""``audit_verify`` when the trail around the chain is damaged (AU-3): a dropped audit table, the
chain head row deleted, a column dropped or altered, the checkpoint log deleted, shortened or
replaced by an older copy. Each is reported as a break with its kind and a non-zero exit status,
never as a traceback.

The damage is done with the table owner's rights inside a savepoint of the test's transaction,
rolled back at the end (DDL is transactional on PostgreSQL and SQLite), so the other tests keep
their tables. The command also runs the way ``manage.py`` runs it (``run_from_argv``: a
``CommandError`` becomes one line on stderr and the exit status; anything else would be a
traceback).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections, transaction
from django.utils import timezone

from compliance import verification
from compliance.checkpoints import checkpoint_create, checkpoint_sign, checkpoints_read, log_path
from compliance.events import EventType
from compliance.export import audit_export
from compliance.management.commands.audit_verify import EXIT_BROKEN
from compliance.management.commands.audit_verify import Command as AuditVerify
from compliance.models import AuditChainHead, AuditEntry
from compliance.services import audit_record
from compliance.triggers import GUARDED_TABLES, triggers_remove
from compliance.verification import CHECKPOINT_SIGNING_GRACE, BreakKind, audit_chain_verify
from tests.compliance.conftest import raw_sql, triggers_lifted
from tests.conftest import require_postgresql

pytestmark = pytest.mark.django_db
LENGTH = 5


@pytest.fixture
def chain(system_context, personas):
    while AuditChainHead.objects.get().sequence < LENGTH:
        audit_record(event_type=EventType.ASSET_VIEW, department=personas.department_a, details={"n": 1})
    return personas


@contextlib.contextmanager
def rolled_back() -> Iterator[None]:
    """A savepoint that is always rolled back: the damage stays inside it."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def verify_from_command_line(capsys, monkeypatch) -> tuple[int, str]:
    """``manage.py audit_verify`` in this process (so it sees the damage of the open transaction):
    (exit status, stderr)."""
    # run_from_argv closes the connections when done: that would end the test's transaction.
    monkeypatch.setattr(connections, "close_all", lambda: None)
    capsys.readouterr()
    try:
        AuditVerify().run_from_argv(["manage.py", "audit_verify", "--skip-checks"])
    except SystemExit as exited:
        status = exited.code
    else:
        status = 0
    return status, capsys.readouterr().err


def expect_reported(kind: BreakKind, capsys, monkeypatch, *, sequence: int | None = None, mentions: str = "") -> str:
    """The break is reported by the function, by call_command and on the command line, alike."""
    result = audit_chain_verify()
    assert (result.ok, result.break_kind) == (False, kind), result.message
    assert result.break_sequence == sequence and mentions in result.message
    where = "" if sequence is None else f" at entry {sequence}"
    with pytest.raises(CommandError, match=f"BROKEN{where}: {kind}: ") as raised:
        call_command("audit_verify")
    assert raised.value.returncode == EXIT_BROKEN
    status, stderr = verify_from_command_line(capsys, monkeypatch)
    assert status == EXIT_BROKEN, stderr
    assert f"CommandError: audit chain BROKEN{where}: {kind}: {result.message}" in stderr
    assert "Traceback" not in stderr
    return result.message


def test_an_intact_chain_exits_zero_from_the_command_line(chain, capsys, monkeypatch):
    """The control for the command-line runs below."""
    checkpoint_create()
    status, stderr = verify_from_command_line(capsys, monkeypatch)
    assert status == 0, stderr


@pytest.mark.parametrize("table", GUARDED_TABLES)
def test_a_dropped_audit_table_is_reported(chain, table, capsys, monkeypatch):
    with rolled_back():
        raw_sql(f"DROP TABLE {table}" + (" CASCADE" if connection.vendor == "postgresql" else ""))
        expect_reported(BreakKind.TABLES_MISSING, capsys, monkeypatch, mentions=table)
    assert audit_chain_verify().ok  # the savepoint took the damage back


def test_the_deleted_chain_head_row_is_reported(chain, capsys, monkeypatch):
    with triggers_lifted():
        raw_sql("DELETE FROM compliance_auditchainhead")
    expect_reported(BreakKind.HEAD_MISSING, capsys, monkeypatch)


UNREADABLE = [  # (table, change, the column the report names, PostgreSQL only)
    ("compliance_auditentry", "DROP COLUMN user_agent", "user_agent", False),
    ("compliance_auditentry", "RENAME COLUMN sealed_at TO sealed_when", "sealed_at", False),
    ("compliance_auditentry", "RENAME COLUMN hash TO digest", "hash", False),
    ("compliance_auditchainhead", "RENAME COLUMN hash TO digest", "hash", False),
    ("compliance_auditanchor", "DROP COLUMN hash", "hash", False),
    ("compliance_auditpending", "RENAME COLUMN timestamp TO stamped", "timestamp", False),
    # Types (SQLite cannot change one): still readable, but not as the chain was written.
    ("compliance_auditentry", "ALTER COLUMN sealed_at TYPE text", "sealed_at", True),
    ("compliance_auditentry", "ALTER COLUMN details TYPE jsonb USING details::jsonb", "details", True),
]


@pytest.mark.parametrize(
    ("table", "change", "column", "postgresql_only"), UNREADABLE, ids=[f"{t[0]}-{t[1]}" for t in UNREADABLE]
)
def test_a_dropped_or_altered_column_is_reported_as_unreadable(
    chain, table, change, column, postgresql_only, capsys, monkeypatch
):
    if postgresql_only and connection.vendor != "postgresql":
        require_postgresql("changing a column's type (SQLite cannot)")
    with rolled_back():
        # SQLite refuses to drop or rename a column its triggers name; the table owner drops them first.
        if connection.vendor == "sqlite":
            triggers_remove(connection)
        raw_sql(f"ALTER TABLE {table} {change}")
        message = expect_reported(BreakKind.UNREADABLE, capsys, monkeypatch)
        assert "cannot be read as this release expects" in message and f"{table}.{column}" in message
    assert audit_chain_verify().ok


# Checkpoint log: the chain records the checkpoints that were signed (audit.checkpoint entries,
# exports), so a log that lacks the newest of them is a break, not a warning.


@pytest.fixture
def verified_later(monkeypatch):
    """audit_verify runs after the grace in which a checkpoint entry may still be being signed
    (a checkpoint entry younger than that and not in the log is not counted yet)."""
    later = timezone.now() + CHECKPOINT_SIGNING_GRACE + timedelta(minutes=1)
    monkeypatch.setattr(verification, "timezone", SimpleNamespace(now=lambda: later))


def test_a_deleted_checkpoint_log_is_a_break(chain, verified_later, capsys, monkeypatch):
    checkpoint = checkpoint_create()
    assert audit_chain_verify().ok
    log_path().unlink()
    message = expect_reported(BreakKind.CHECKPOINT_MISSING, capsys, monkeypatch, sequence=checkpoint.sequence)
    assert "does not exist" in message and f"audit.checkpoint entry {checkpoint.sequence}" in message


def test_a_shortened_checkpoint_log_is_a_break(chain, verified_later, capsys, monkeypatch):
    checkpoint_create()
    audit_record(event_type=EventType.ASSET_VIEW, details={"n": 2})
    newest = checkpoint_create()
    lines = log_path().read_text().splitlines(keepends=True)
    assert len(lines) == 2 and audit_chain_verify().ok
    log_path().write_text("".join(lines[:-1]))
    message = expect_reported(BreakKind.CHECKPOINT_MISSING, capsys, monkeypatch, sequence=newest.sequence)
    assert "does not hold it" in message


def test_a_checkpoint_log_replaced_by_an_older_copy_is_a_break(chain, verified_later, capsys, monkeypatch, tmp_path):
    checkpoint_create()
    older_copy = tmp_path / "checkpoints.older.jsonl"
    shutil.copy(log_path(), older_copy)
    for n in range(3):
        audit_record(event_type=EventType.ASSET_VIEW, details={"n": n})
    newest = checkpoint_create()
    assert audit_chain_verify().ok
    shutil.copy(older_copy, log_path())
    expect_reported(BreakKind.CHECKPOINT_MISSING, capsys, monkeypatch, sequence=newest.sequence)


def test_an_export_records_its_checkpoint_at_once(chain, capsys, monkeypatch, tmp_path):
    """An export signs before its entry is written: no grace, the log must hold it right away."""
    exported = audit_export(output=tmp_path / "trail.jsonl", format="jsonl")
    assert audit_chain_verify().ok
    log_path().unlink()
    message = expect_reported(BreakKind.CHECKPOINT_MISSING, capsys, monkeypatch, sequence=exported.last_sequence)
    assert f"the export recorded in entry {AuditChainHead.objects.get().sequence}" in message


@pytest.mark.parametrize("damage", ["directory", "not UTF-8"])
def test_an_unreadable_checkpoint_log_is_reported(chain, damage, capsys, monkeypatch):
    checkpoint_create()
    log_path().unlink()
    if damage == "directory":
        log_path().mkdir()
    else:
        log_path().write_bytes(b"\xff\xfe{not a line}\n")
    message = expect_reported(BreakKind.UNREADABLE, capsys, monkeypatch)
    assert f"the checkpoint log ({log_path()}) cannot be read" in message


def test_a_log_that_lost_only_older_checkpoints_is_a_warning(chain, verified_later):
    """The newest checkpoint covers everything before it: a line lost before it cannot hide a rewrite."""
    older = checkpoint_create()
    audit_record(event_type=EventType.ASSET_VIEW, details={"n": 2})
    newest = checkpoint_create()
    lines = log_path().read_text().splitlines(keepends=True)
    log_path().write_text("".join(lines[1:]))
    result = audit_chain_verify()
    assert result.ok and result.checkpoints_matched == 1, result.message
    assert any(f"first at entry {older.sequence}" in warning for warning in result.warnings)
    assert [checkpoint.sequence for checkpoint in checkpoints_read()] == [newest.sequence]
    call_command("audit_verify")


def test_no_checkpoint_recorded_and_no_log_is_a_warning(chain, capsys):
    """A chain that never recorded a checkpoint has nothing for a log to hold."""
    assert not log_path().exists()
    assert not AuditEntry.objects.filter(event_type=EventType.AUDIT_CHECKPOINT).exists()
    result = audit_chain_verify()
    assert result.ok and any("no checkpoint log" in warning for warning in result.warnings), result.message
    call_command("audit_verify")
    assert "no checkpoint log" in capsys.readouterr().err


def test_a_checkpoint_signed_without_its_entry_is_not_required(chain, verified_later):
    """Checkpoints signed directly (no audit.checkpoint entry, no export) are not recorded by the
    chain: only what the chain records is required of the log."""
    head = AuditChainHead.objects.get()
    checkpoint_sign(sequence=head.sequence, hash=head.hash)
    log_path().unlink()
    assert audit_chain_verify().ok
