"""The sealing clock (audit-v4, AU-3): each entry carries the database's clock when it was chained,
inside its hash, and ``audit_verify`` reports entries back-dated into the pending table.

Everything is sealed by the production sealer of the database under test: SQL on PostgreSQL
(compliance_audit_seal), Python on SQLite; ``audit_verify`` recomputes every hash in Python, so on
PostgreSQL these tests also prove that the two implementations encode the clock alike.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from compliance import triggers
from compliance.chain import SEALING_CLOCK, V2, V4, WRITE_VERSION, canonical, chain_hash, format_timestamp
from compliance.checkpoints import checkpoint_sign
from compliance.events import EventType
from compliance.management.commands.audit_verify import EXIT_BACKDATED
from compliance.models import GENESIS_HASH, AuditChainHead, AuditEntry, AuditPending
from compliance.sealing import seal_pending
from compliance.services import audit_record
from compliance.verification import BACKDATING_TOLERANCE, BreakKind, VerifyResult, _walk, audit_chain_verify
from tests.compliance.conftest import raw_sql, triggers_lifted

pytestmark = pytest.mark.django_db
LENGTH = 5
# What the clock trigger says (compliance/triggers.py): PostgreSQL names the entry, SQLite cannot.
NOT_THE_DATABASE_CLOCK = re.escape(
    triggers.NOT_THE_DATABASE_CLOCK.format(sequence=f"{LENGTH + 1} " if connection.vendor == "postgresql" else "")
)


def database_clock() -> datetime:
    """The database's own clock now (what the sealer reads), as an aware datetime."""
    if connection.vendor == "postgresql":
        return raw_sql("SELECT clock_timestamp()")[0][0]
    (text,) = raw_sql("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")[0]
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def record(**details) -> AuditEntry:
    return audit_record(event_type=EventType.ASSET_VIEW, object_repr="sealing clock", details=details)


@pytest.fixture
def chain(system_context, personas):
    """Entries 1..LENGTH, each chained by a seal of its own, the head signed."""
    while AuditChainHead.objects.get().sequence < LENGTH:
        record(n=AuditChainHead.objects.get().sequence)
    head = AuditChainHead.objects.get()
    checkpoint_sign(sequence=head.sequence, hash=head.hash)
    return personas


def pending_insert(timestamp: datetime, *, version: int | None = None, repr: str = "inserted by hand") -> None:
    """A pending entry written straight into the table, as raw SQL would (no audit_record):
    without ``version`` the column's default (audit-v2, the previous release's format)."""
    columns = [name for name in V2.fields if name != "sequence"]  # the pending table has no sequence
    values = [
        connection.ops.adapt_datetimefield_value(timestamp),
        "system",
        "",
        "system",
        None,
        "",
        str(EventType.ASSET_VIEW),
        "success",
        "",
        "",
        repr,
        "10.0.0.9",
        "psql",
        "",
        '{"by":"hand"}',
    ]
    if version is not None:
        columns.append("format_version")
        values.append(version)
    raw_sql(
        f"INSERT INTO compliance_auditpending ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(values))})",  # noqa: S608  (test SQL from constants)
        values,
    )


def sealed(**filters) -> AuditEntry:
    return AuditEntry.objects.get(**filters)


def test_entries_carry_the_database_clock_at_sealing_inside_their_hash(chain):
    before = database_clock()
    written = record(n="clock")
    after = database_clock()
    entry = sealed(sequence=written.sequence)
    assert entry.format_version == WRITE_VERSION == V4.version
    assert SEALING_CLOCK in V4.fields and SEALING_CLOCK not in V2.fields
    # The database's clock, read while this very entry was sealed (not the writer's timestamp).
    assert before <= entry.sealed_at <= after
    # Inside the hashed bytes, in the canonical text form; the Python encoding of the stored row
    # gives the stored hash (on PostgreSQL the SQL sealer computed it).
    bytes_ = canonical(entry)
    assert bytes_.startswith(b"audit-v4") and bytes_.endswith(format_timestamp(entry.sealed_at).encode())
    assert chain_hash(entry.prev_hash, entry) == entry.hash == written.hash
    assert audit_chain_verify().ok

    # Moving the clock by a microsecond breaks the entry: the clock is covered by the hash.
    with triggers_lifted():
        raw_sql(
            "UPDATE compliance_auditentry SET sealed_at = %s WHERE sequence = %s",
            [connection.ops.adapt_datetimefield_value(entry.sealed_at + timedelta(microseconds=1)), entry.sequence],
        )
    result = audit_chain_verify()
    assert (result.ok, result.break_kind, result.break_sequence) == (False, BreakKind.HASH_MISMATCH, entry.sequence)


def _forged_next_entry(sealed_at: datetime | None, version: int) -> list:
    """A copy of the newest entry as the next link of the chain (correct sequence, link and hash),
    with a sealing clock of the forger's choosing."""
    head = AuditChainHead.objects.get()
    newest = sealed(sequence=head.sequence)
    row = SimpleNamespace(**{name: getattr(newest, name) for name in V4.fields})
    row.sequence, row.sealed_at, row.format_version = head.sequence + 1, sealed_at, version
    return [
        head.sequence + 1,
        None if sealed_at is None else connection.ops.adapt_datetimefield_value(sealed_at),
        version,
        head.hash,
        chain_hash(head.hash, row),
        head.sequence,
    ]


FORGED_INSERT = (
    "INSERT INTO compliance_auditentry (sequence, timestamp, actor_type, actor_id, actor_name, department_id, "
    "department_slug, event_type, outcome, object_type, object_id, object_repr, source_ip, user_agent, "
    "request_id, details, sealed_at, format_version, prev_hash, hash) SELECT %s, timestamp, actor_type, "
    "actor_id, actor_name, department_id, department_slug, event_type, outcome, object_type, object_id, "
    "object_repr, source_ip, user_agent, request_id, details, %s, %s, %s, %s "
    "FROM compliance_auditentry WHERE sequence = %s"
)


def test_the_database_refuses_an_entry_whose_sealing_clock_is_not_its_own(chain):
    """Whoever may INSERT cannot choose an entry's sealing clock, nor leave it out."""
    for sealed_at, version in (
        (database_clock() - timedelta(hours=1), V4.version),  # a clock of the forger's choosing
        (database_clock() + timedelta(hours=1), V4.version),
        (None, V4.version),
        (None, V2.version),  # the previous format, which has no clock
    ):
        with pytest.raises(DatabaseError, match=NOT_THE_DATABASE_CLOCK), transaction.atomic():
            raw_sql(FORGED_INSERT, _forged_next_entry(sealed_at, version))
    # The same insert carrying the database's own clock is let in: the refusals above are the clock's.
    with transaction.atomic():
        raw_sql(FORGED_INSERT, _forged_next_entry(database_clock(), V4.version))
        assert AuditEntry.objects.filter(sequence=LENGTH + 1).exists()
        transaction.set_rollback(True)


def test_a_pending_entry_in_the_previous_format_is_chained_with_the_clock(chain):
    """audit-v2 pending entries (a process of the previous release during an upgrade, or an insert
    that leaves the version to the column's default) are chained as audit-v4: every entry chained
    since carries the clock, so leaving the version out cannot dodge the back-dating check."""
    now = database_clock()
    pending_insert(now, version=V2.version, repr="v2 explicit")
    pending_insert(now, repr="v2 by default")
    assert sorted(AuditPending.objects.values_list("format_version", flat=True)) == [V2.version, V2.version]
    before = database_clock()
    assert seal_pending() == 2
    after = database_clock()
    assert not AuditPending.objects.exists()
    for repr in ("v2 explicit", "v2 by default"):
        entry = sealed(object_repr=repr)
        assert entry.format_version == V4.version
        assert before <= entry.sealed_at <= after
        assert canonical(entry).startswith(b"audit-v4")
        assert chain_hash(entry.prev_hash, entry) == entry.hash
    result = audit_chain_verify()
    assert result.ok and result.last_sequence == LENGTH + 2, result.message
    assert result.backdated_count == 0


def backdated_sequences(result: VerifyResult) -> list[int]:
    return [entry.sequence for entry in result.backdated]


def test_an_entry_back_dated_into_the_pending_table_is_reported(chain, capsys):
    now = database_clock()
    pending_insert(now - BACKDATING_TOLERANCE - timedelta(hours=2), repr="back-dated")
    seal_pending()
    pending_insert(now - BACKDATING_TOLERANCE / 2, repr="slow transaction")  # within the tolerance
    seal_pending()
    record(n="after")  # a normal entry after them
    pending_insert(database_clock(), repr="hand-written, honest time")
    seal_pending()
    record(n="last")
    backdated = sealed(object_repr="back-dated")
    head = AuditChainHead.objects.get().sequence
    assert head == LENGTH + 5

    result = audit_chain_verify()
    # The chain itself is intact around it: it holds faithfully what was inserted.
    assert result.ok and (result.first_sequence, result.last_sequence) == (1, head), result.message
    assert backdated_sequences(result) == [backdated.sequence] and result.backdated_count == 1
    (listed,) = result.backdated
    assert listed.timestamp == format_timestamp(backdated.timestamp)
    # Its reference is the seal before its own, which chained entry LENGTH.
    assert listed.sealed_after == format_timestamp(sealed(sequence=LENGTH).sealed_at)
    if connection.vendor == "postgresql":  # the detailed walk (SQLite's only one) agrees with the fast pass
        detailed = VerifyResult(ok=False)
        _walk(detailed, {}, 1, GENESIS_HASH, head)
        assert backdated_sequences(detailed) == [backdated.sequence] and detailed.entries == head

    with pytest.raises(CommandError, match="1 audit entries BACKDATED") as raised:
        call_command("audit_verify")
    assert raised.value.returncode == EXIT_BACKDATED == 3
    output = capsys.readouterr()
    assert f"back-dated: entry {backdated.sequence} says {listed.timestamp}" in output.err
    assert "audit chain intact" in output.out
    assert output.err.count("back-dated: entry") == 1

    with pytest.raises(CommandError) as raised:
        call_command("audit_verify", "--json")
    assert raised.value.returncode == EXIT_BACKDATED
    reported = json.loads(capsys.readouterr().out)
    assert reported["ok"] is True and reported["backdated_count"] == 1
    assert [entry["sequence"] for entry in reported["backdated"]] == [backdated.sequence]


def test_a_chain_without_back_dated_entries_exits_zero(chain, capsys):
    """The control: entries written by hand with honest times, and one within the tolerance, pass."""
    pending_insert(database_clock() - BACKDATING_TOLERANCE / 2, repr="slow transaction")
    seal_pending()
    pending_insert(database_clock(), repr="honest")
    seal_pending()
    record(n="after")
    result = audit_chain_verify()
    assert result.ok and result.backdated_count == 0 and result.last_sequence == LENGTH + 3, result.message
    call_command("audit_verify")
    assert "audit chain intact" in capsys.readouterr().out
