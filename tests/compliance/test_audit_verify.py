"""audit_verify against every attack of the issue, each performed with raw SQL.

Each test builds a small chain through audit_record, signs a checkpoint of its head, lifts the
triggers the way an attacker with the table owner's rights would, tampers, and expects
audit_verify to name the first bad sequence number and the kind of break.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from compliance import sealing
from compliance.chain import (
    CANONICAL_FIELDS,
    SEALING_CLOCK,
    V4,
    WRITE_VERSION,
    UnknownFormatVersion,
    canonical,
    chain_hash,
    format_register,
    format_unregister,
    formats_fields,
)
from compliance.checkpoints import checkpoint_sign, checkpoints_read, log_path
from compliance.events import EventType, Outcome
from compliance.models import GENESIS_HASH, AuditChainHead, AuditEntry
from compliance.services import audit_record
from compliance.triggers import triggers_install, triggers_remove
from compliance.verification import BreakKind, VerifyResult, _fast_walk, audit_chain_verify, entry_rows
from tests.compliance.conftest import raw_sql, triggers_lifted

pytestmark = pytest.mark.django_db
LENGTH = 8


@pytest.fixture
def chain(system_context, personas):
    """Entries 1..LENGTH (personas wrote the first ones), the head signed by a checkpoint."""
    while AuditChainHead.objects.get().sequence < LENGTH:
        audit_record(
            event_type=EventType.INFERENCE,
            actor=personas.member,
            department=personas.department_a,
            object_type="inference.conversation",
            object_id="42",
            details={"prompt_sha256": "ab" * 32, "preview": "你好 ***", "tokens": 17, "latency_ms": 12.5},
        )
    head = AuditChainHead.objects.get()
    checkpoint_sign(sequence=head.sequence, hash=head.hash)
    return personas


@pytest.fixture
def format_v3(db):
    """A test-only audit format 3: audit-v4's fields and one more (the version itself, a column
    every entry has). Production registers v2 and v4 only."""
    registered = format_register(
        3, (*V4.fields, "format_version"), tag=b"audit-v3-test", timestamp_fields=("timestamp", SEALING_CLOCK)
    )
    # The SQL sealer and the insert checks are generated from the registry when installed (in the
    # test's transaction).
    triggers_remove(connection)
    triggers_install(connection)
    try:
        yield registered
    finally:
        format_unregister(3)
        triggers_remove(connection)
        triggers_install(connection)


def append_in_format(monkeypatch, version: int, **kwargs) -> AuditEntry:
    """audit_record, writing ``version`` instead of chain.WRITE_VERSION."""
    with monkeypatch.context() as patched:
        patched.setattr(sealing, "WRITE_VERSION", version)
        return audit_record(**kwargs)


def expect_break(kind: BreakKind, sequence: int) -> None:
    result = audit_chain_verify()
    assert (result.ok, result.break_kind, result.break_sequence) == (False, kind, sequence), result.message
    with pytest.raises(CommandError, match=f"BROKEN at entry {sequence}: {kind}") as raised:
        call_command("audit_verify")
    assert raised.value.returncode == 1


def entry_as_row(sequence: int) -> SimpleNamespace:
    entry = AuditEntry.objects.get(sequence=sequence)
    return SimpleNamespace(**{name: getattr(entry, name) for name in (*formats_fields(), "format_version")})


def insert_copy(of_sequence: int, *, sequence: int, actor_name: str, prev_hash: str, hash: str) -> None:
    """Insert a copy of entry ``of_sequence`` at ``sequence``, with the given actor name and links."""
    raw_sql(
        "INSERT INTO compliance_auditentry (sequence, timestamp, actor_type, actor_id, actor_name, department_id, "
        "department_slug, event_type, outcome, object_type, object_id, object_repr, source_ip, user_agent, "
        "request_id, details, format_version, sealed_at, prev_hash, hash) SELECT %s, timestamp, actor_type, "
        "actor_id, %s, department_id, department_slug, event_type, outcome, object_type, object_id, "
        "object_repr, source_ip, user_agent, request_id, details, format_version, sealed_at, %s, %s "
        "FROM compliance_auditentry WHERE sequence = %s",
        (sequence, actor_name, prev_hash, hash, of_sequence),
    )


def test_intact_chain_verifies_and_prints_its_range(chain, capsys):
    result = audit_chain_verify()
    assert result.ok, result.message
    assert (result.first_sequence, result.last_sequence, result.entries) == (1, LENGTH, LENGTH)
    assert result.checkpoints_matched == 1 and result.latest_checkpoint.sequence == LENGTH
    call_command("audit_verify")
    assert f"entries 1..{LENGTH} verified" in capsys.readouterr().out


def test_verifier_rows_encode_exactly_like_audit_record(chain):
    """The verifier formats rows itself (SQL on PostgreSQL); it must give audit_record's bytes."""
    audit_record(
        event_type=EventType.LOGIN_FAILED,
        outcome=Outcome.FAILURE,
        object_repr="名字 with ünïcode",
        details={"z": [1, 2.5, None, True], "a": {"b": "身份证"}, "empty": ""},
    )
    for row in entry_rows(0):
        assert row.canonical == canonical(AuditEntry.objects.get(sequence=row.sequence))
        assert row.hash == AuditEntry.objects.get(sequence=row.sequence).hash


def test_modified_row_with_its_hash_recomputed(chain):
    row = entry_as_row(4)
    row.actor_name = "mallory"
    new_hash = chain_hash(AuditEntry.objects.get(sequence=4).prev_hash, row)
    with triggers_lifted():
        raw_sql("UPDATE compliance_auditentry SET actor_name = 'mallory', hash = %s WHERE sequence = 4", (new_hash,))
    expect_break(BreakKind.REHASHED, 4)


RENUMBERED_AFTER_DELETE = (
    "DELETE FROM compliance_auditentry WHERE sequence = 5",
    "UPDATE compliance_auditentry SET sequence = sequence + 1000000 WHERE sequence > 5",
    "UPDATE compliance_auditentry SET sequence = sequence - 1000001 WHERE sequence > 1000000",
    "UPDATE compliance_auditchainhead SET sequence = sequence - 1",
)
SWAPPED_ROWS = (
    "UPDATE compliance_auditentry SET sequence = 1000003 WHERE sequence = 3",
    "UPDATE compliance_auditentry SET sequence = 3 WHERE sequence = 4",
    "UPDATE compliance_auditentry SET sequence = 4 WHERE sequence = 1000003",
)


@pytest.mark.parametrize(
    ("statements", "kind", "sequence"),
    [
        (["UPDATE compliance_auditentry SET outcome = 'failure' WHERE sequence = 4"], BreakKind.HASH_MISMATCH, 4),
        (["DELETE FROM compliance_auditentry WHERE sequence = 5"], BreakKind.MISSING, 5),
        (RENUMBERED_AFTER_DELETE, BreakKind.REORDERED, 5),
        (["DELETE FROM compliance_auditentry WHERE sequence >= 6"], BreakKind.TRUNCATED, 6),
        (SWAPPED_ROWS, BreakKind.REORDERED, 3),
    ],
    ids=[
        "modified_field",
        "deleted_middle_row",
        "deleted_middle_row_with_the_rest_renumbered",
        "truncation_of_the_newest_rows",
        "swapped_rows",
    ],
)
def test_attack_in_plain_sql(chain, statements, kind, sequence):
    with triggers_lifted():
        for statement in statements:
            raw_sql(statement)
    expect_break(kind, sequence)


def test_swapped_contents(chain):
    columns = "actor_name, department_id, department_slug, event_type, outcome, object_repr"
    (three,) = raw_sql(f"SELECT {columns} FROM compliance_auditentry WHERE sequence = 3")  # noqa: S608  (test SQL from constants)
    (four,) = raw_sql(f"SELECT {columns} FROM compliance_auditentry WHERE sequence = 4")  # noqa: S608  (test SQL from constants)
    assignments = ", ".join(f"{name.strip()} = %s" for name in columns.split(","))
    with triggers_lifted():
        raw_sql(f"UPDATE compliance_auditentry SET {assignments} WHERE sequence = 3", four)  # noqa: S608  (test SQL from constants)
        raw_sql(f"UPDATE compliance_auditentry SET {assignments} WHERE sequence = 4", three)  # noqa: S608  (test SQL from constants)
    expect_break(BreakKind.HASH_MISMATCH, 3)


def test_inserted_row(chain):
    """Renumber the tail up by one and slip a well-formed, correctly hashed entry in at 5."""
    forged = entry_as_row(5)
    forged.sequence, forged.actor_name = 5, "mallory"
    prev_hash = AuditEntry.objects.get(sequence=4).hash
    forged_hash = chain_hash(prev_hash, forged)
    with triggers_lifted():
        raw_sql("UPDATE compliance_auditentry SET sequence = sequence + 1000000 WHERE sequence >= 5")
        raw_sql("UPDATE compliance_auditentry SET sequence = sequence - 999999 WHERE sequence >= 1000000")
        # The displaced entry must now link to the forged one (prev_hash is unique).
        raw_sql("UPDATE compliance_auditentry SET prev_hash = %s WHERE sequence = 6", (forged_hash,))
        insert_copy(6, sequence=5, actor_name="mallory", prev_hash=prev_hash, hash=forged_hash)
    expect_break(BreakKind.INSERTED, 5)


def test_fully_rehashed_rewritten_chain(chain):
    """Every link is consistent again; only the signed checkpoint can tell."""
    with triggers_lifted():
        raw_sql("UPDATE compliance_auditentry SET outcome = 'denied' WHERE sequence = 3")
        prev_hash = AuditEntry.objects.get(sequence=2).hash
        for sequence in range(3, LENGTH + 1):
            row = entry_as_row(sequence)
            new_hash = chain_hash(prev_hash, row)
            raw_sql(
                "UPDATE compliance_auditentry SET prev_hash = %s, hash = %s WHERE sequence = %s",
                (prev_hash, new_hash, sequence),
            )
            prev_hash = new_hash
        raw_sql("UPDATE compliance_auditchainhead SET hash = %s", (prev_hash,))
    expect_break(BreakKind.CHECKPOINT_MISMATCH, LENGTH)


def test_rollback_to_an_older_backup(chain):
    """A consistent older state: head and entries agree, but a checkpoint was signed later."""
    (older_hash,) = AuditEntry.objects.filter(sequence=5).values_list("hash", flat=True)
    with triggers_lifted():
        raw_sql("DELETE FROM compliance_auditentry WHERE sequence > 5")
        raw_sql("UPDATE compliance_auditchainhead SET sequence = 5, hash = %s", (older_hash,))
    expect_break(BreakKind.ROLLED_BACK, 6)


def test_entry_moved_to_another_department(chain):
    department_b = chain.department_b
    target = AuditEntry.objects.filter(department_id=chain.department_a.pk).order_by("-sequence").first()
    with triggers_lifted():
        raw_sql(
            "UPDATE compliance_auditentry SET department_id = %s, department_slug = %s WHERE sequence = %s",
            (department_b.pk, department_b.slug, target.sequence),
        )
    expect_break(BreakKind.HASH_MISMATCH, target.sequence)


def test_checkpoint_with_a_bad_signature(chain):
    lines = log_path().read_text().splitlines()
    forged = json.loads(lines[-1])
    forged["sequence"] = 3  # claims another entry, keeps the old signature
    forged["hash"] = AuditEntry.objects.get(sequence=3).hash
    log_path().write_text("\n".join([*lines, json.dumps(forged)]) + "\n")
    expect_break(BreakKind.BAD_SIGNATURE, 3)


def test_checkpoint_signed_with_another_key(chain):
    other_key = Ed25519PrivateKey.generate()
    (good,) = list(checkpoints_read())
    forged = good.as_json() | {"sequence": 2, "hash": AuditEntry.objects.get(sequence=2).hash}
    import base64

    from compliance.checkpoints import Checkpoint

    message = Checkpoint(**forged).signed_message()
    forged["signature"] = base64.b64encode(other_key.sign(message)).decode()
    with log_path().open("a") as handle:
        handle.write(json.dumps(forged) + "\n")
    expect_break(BreakKind.BAD_SIGNATURE, 2)
    assert other_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_entry_appended_around_audit_record(chain):
    """Correctly hashed but the head was not moved: it lies beyond the head."""
    head = AuditChainHead.objects.get()
    row = entry_as_row(head.sequence)
    row.sequence = head.sequence + 1
    forged_hash = chain_hash(head.hash, row)
    with triggers_lifted():
        insert_copy(
            head.sequence, sequence=row.sequence, actor_name=row.actor_name, prev_hash=head.hash, hash=forged_hash
        )
    expect_break(BreakKind.BEYOND_HEAD, head.sequence + 1)


def test_checkpoint_command_signs_the_head_and_covers_its_own_entry(chain, capsys):
    call_command("audit_checkpoint")
    head = AuditChainHead.objects.get()
    latest = list(checkpoints_read())[-1]
    assert (latest.sequence, latest.hash, latest.valid) == (head.sequence, head.hash, True)
    assert AuditEntry.objects.get(sequence=head.sequence).event_type == EventType.AUDIT_CHECKPOINT
    assert audit_chain_verify().checkpoints_matched == 2


def test_entries_are_written_in_the_current_format_and_their_bytes_open_with_its_tag(chain):
    for entry in AuditEntry.objects.all():
        assert entry.format_version == WRITE_VERSION == 4
        assert canonical(entry).startswith(b"audit-v4") and entry.sealed_at is not None


def test_a_changed_format_version_breaks_the_chain_even_to_a_registered_version(chain, format_v3):
    """v3 is registered here, so the changed row is read in v3's encoding: it no longer hashes."""
    with triggers_lifted():
        raw_sql("UPDATE compliance_auditentry SET format_version = 3 WHERE sequence = 4")
    expect_break(BreakKind.HASH_MISMATCH, 4)


def test_an_unknown_format_version_is_reported_as_a_break(chain):
    with triggers_lifted():
        raw_sql("UPDATE compliance_auditentry SET format_version = 99 WHERE sequence = 4")
    expect_break(BreakKind.UNKNOWN_FORMAT, 4)
    assert "format version 99" in audit_chain_verify().message


def test_two_formats_verify_side_by_side_in_one_chain(chain, format_v3, monkeypatch):
    """Entries of audit-v4 and of a (test-only) v3 that hashes one more field, sealed by the
    production sealer (SQL on PostgreSQL, Python on SQLite), each verify under their own format.
    (An entry written as audit-v2 is chained as audit-v4: tests/compliance/test_sealing_clock.py.)"""
    write = dict(event_type=EventType.ASSET_VIEW, details={"n": "v3 ✓"})
    v3 = append_in_format(monkeypatch, 3, **write)
    v2 = append_in_format(monkeypatch, WRITE_VERSION, **write)
    assert (v3.sequence, v2.sequence) == (LENGTH + 1, LENGTH + 2)
    stored = {entry.sequence: entry for entry in AuditEntry.objects.filter(sequence__gt=LENGTH)}
    assert (stored[v3.sequence].format_version, stored[v2.sequence].format_version) == (3, WRITE_VERSION)
    assert canonical(stored[v3.sequence]).startswith(format_v3.tag)
    assert chain_hash(stored[v3.sequence].prev_hash, stored[v3.sequence]) == stored[v3.sequence].hash
    assert v3.hash == stored[v3.sequence].hash and v2.hash == stored[v2.sequence].hash
    # The same content hashes differently in the two formats.
    assert canonical(stored[v3.sequence])[len(format_v3.tag) :] != canonical(stored[v2.sequence])[len(V4.tag) :]
    result = audit_chain_verify()
    assert result.ok and result.last_sequence == LENGTH + 2, result.message
    if connection.vendor == "postgresql":  # the fast pass itself reads both formats
        assert _fast_walk(VerifyResult(ok=False), {}, 1, GENESIS_HASH, LENGTH + 2)
    for row in entry_rows(LENGTH):
        assert row.format.version == stored[row.sequence].format_version
    # A v3 entry's extra field is hashed too: change it (to another registered version) and it breaks.
    with triggers_lifted():
        raw_sql(
            "UPDATE compliance_auditentry SET format_version = %s WHERE sequence = %s", [WRITE_VERSION, v3.sequence]
        )
    expect_break(BreakKind.HASH_MISMATCH, v3.sequence)


def test_the_registry_refuses_a_second_registration_and_formats_without_the_sequence():
    with pytest.raises(ValueError, match="already registered"):
        format_register(2, CANONICAL_FIELDS)
    with pytest.raises(ValueError, match="sequence"):
        format_register(5, ("timestamp", "details"))
    with pytest.raises(UnknownFormatVersion):
        canonical(SimpleNamespace(format_version=99, **dict.fromkeys(CANONICAL_FIELDS)))
