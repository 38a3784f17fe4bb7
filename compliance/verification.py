"""``audit_verify``: recompute the chain and check it against the signed checkpoints.

One streaming pass over the entries in sequence order (server-side cursor on PostgreSQL, so
memory stays flat for any length), then the chain head and the checkpoints. The first break
found is reported with its sequence number and its kind:

==================  ======================================================================
kind                meaning
==================  ======================================================================
hash_mismatch       the entry's fields do not hash to its stored hash: a field was modified,
                    the entry was moved to another department, or rows were swapped
rehashed            the entry was modified and its hash recomputed: the next entry still
                    links to the original hash
inserted            an entry was slipped in: the next entry was written under the sequence number
                    before its own, or links to the entry before the inserted one
link_broken         the entry does not link to the previous one (and none of the above fits)
missing             a sequence number is missing: an entry was deleted
reordered           the entry was written under the next sequence number: an entry before it
                    was deleted and the rest renumbered, or entries were swapped
anchor_mismatch     the first remaining entry does not continue from the purge anchor
anchor_unsigned     the purge anchor in the database is not in the signed checkpoint log
beyond_head         an entry exists past the chain head: it was appended around audit_record
truncated           the chain head names newer entries than exist: the newest were removed
head_mismatch       the chain head's hash differs from the newest entry's
checkpoint_mismatch an entry differs from a signed checkpoint: the chain was rewritten
rolled_back         a checkpoint was signed past the newest entry: rollback or truncation
bad_signature       a line of the checkpoint log does not verify with the signing key
==================  ======================================================================
"""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from django.db import connection, transaction

from compliance.chain import CANONICAL_FIELDS, FORMAT_VERSION, NULL_LENGTH, canonical_from_fields, format_timestamp
from compliance.checkpoints import KIND_ANCHOR, KIND_CHECKPOINT, Checkpoint, checkpoints_read, log_path
from compliance.models import GENESIS_HASH, AuditAnchor, AuditChainHead
from compliance.sealing import pending_status


class BreakKind(StrEnum):
    HASH_MISMATCH = "hash_mismatch"
    REHASHED = "rehashed"
    INSERTED = "inserted"
    LINK_BROKEN = "link_broken"
    MISSING = "missing"
    REORDERED = "reordered"
    ANCHOR_MISMATCH = "anchor_mismatch"
    ANCHOR_UNSIGNED = "anchor_unsigned"
    BEYOND_HEAD = "beyond_head"
    TRUNCATED = "truncated"
    HEAD_MISMATCH = "head_mismatch"
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"
    ROLLED_BACK = "rolled_back"
    BAD_SIGNATURE = "bad_signature"


@dataclass
class VerifyResult:
    ok: bool
    first_sequence: int | None = None
    last_sequence: int | None = None
    entries: int = 0
    break_kind: BreakKind | None = None
    break_sequence: int | None = None
    message: str = ""
    checkpoints_valid: int = 0
    checkpoints_matched: int = 0
    latest_checkpoint: Checkpoint | None = None
    anchor_sequence: int | None = None
    warnings: list[str] = field(default_factory=list)


class _Break(Exception):
    def __init__(self, kind: BreakKind, sequence: int | None, message: str):
        super().__init__(message)
        self.kind, self.sequence, self.message = kind, sequence, message


# The columns in CANONICAL_FIELDS order, then prev_hash and hash. Every column but the
# timestamp is stored as the very text that was hashed (details as canonical JSON text, the
# address in compressed form), so the database's text output is the hashed text.
_COLUMNS = """sequence, "timestamp", actor_type, actor_id, actor_name, department_id, department_slug,
       event_type, outcome, object_type, object_id, object_repr, source_ip, user_agent, request_id, details,
       prev_hash, hash"""
_SELECT = f"SELECT {_COLUMNS} FROM compliance_auditentry WHERE sequence > %s ORDER BY sequence"  # noqa: S608
# COPY streams rows as tab-separated text far faster than a cursor builds Python tuples. The
# empty string stands for NULL: only department_id (a number) and source_ip (never empty, a
# CHECK constraint) may be NULL, and no other column is read as NULL.
# The fast pass lets the database print the timestamp in its canonical form: the server has a
# core of its own, the Python loop is the bottleneck.
_COPY_COLUMNS = _COLUMNS.replace(
    '"timestamp"', """to_char("timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')""", 1
)
_PG_COPY = f"COPY (SELECT {_COPY_COLUMNS} FROM compliance_auditentry WHERE sequence > {{after:d}} ORDER BY sequence) TO STDOUT (NULL '')"  # noqa: E501, S608
FETCH_SIZE = 5000
_DEPARTMENT, _ADDRESS = CANONICAL_FIELDS.index("department_id"), CANONICAL_FIELDS.index("source_ip")
_COPY_ESCAPES = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v", b"\\": b"\\"}
_COPY_ESCAPE = re.compile(rb"\\(.)")


def _copy_unescape(field: bytes) -> bytes:
    return _COPY_ESCAPE.sub(lambda match: _COPY_ESCAPES[match.group(1)], field)


def _timestamp_text(value: str | datetime) -> bytes:
    """The canonical timestamp from what the database returned: a datetime (PostgreSQL) or
    SQLite's naive UTC text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:  # SQLite: Django stores aware datetimes as naive UTC
        value = value.replace(tzinfo=UTC)
    return format_timestamp(value).encode()


def _hashes_as(
    sequence: int, canonical_bytes: bytes, as_sequence: int, prev_hash: str | None, stored_hash: str
) -> bool:
    """Would this entry hash correctly had it been written as ``as_sequence`` after ``prev_hash``?

    Only used once a break is found, to tell a renumbering (insertion, deletion, swap) from an edit.
    """
    if prev_hash is None or as_sequence < 1:
        return False
    header_start = len(FORMAT_VERSION)
    body_start = header_start + 4 * len(CANONICAL_FIELDS)
    old_field, new_field = str(sequence).encode(), str(as_sequence).encode()
    header = len(new_field).to_bytes(4, "big") + canonical_bytes[header_start + 4 : body_start]
    rewritten = FORMAT_VERSION + header + new_field + canonical_bytes[body_start + len(old_field) :]
    return hashlib.sha256(bytes.fromhex(prev_hash) + rewritten).hexdigest() == stored_hash


def entry_rows(after_sequence: int = 0) -> Iterator[tuple[int, bytes, str, str]]:
    """(sequence, canonical bytes, prev_hash, hash) of every entry after ``after_sequence``.

    The plain, any-database path: SQLite always, and PostgreSQL when the fast pass found a break
    and the detailed walk names it.
    """
    postgres = connection.vendor == "postgresql"
    cursor = connection.chunked_cursor() if postgres else connection.cursor()
    try:
        cursor.execute(_SELECT, [after_sequence])
        while rows := cursor.fetchmany(FETCH_SIZE):
            for row in rows:
                fields = [None if value is None else str(value).encode() for value in row[:16]]
                fields[1] = _timestamp_text(row[1])
                yield row[0], canonical_from_fields(fields), row[16], row[17]
    finally:
        cursor.close()


def _fast_walk(result: VerifyResult, checkpoints: dict[int, str], start: int, start_hash: str, head: int) -> bool:
    """The happy path on PostgreSQL: one COPY stream, each entry checked in a few C calls.

    True if every entry is in sequence, links to the one before and matches its hash and any
    signed checkpoint; False at the first anomaly, which the detailed walk then names. The loop
    is the benchmark's hot path (docs/audit.md): keep per-entry Python to a minimum.
    """
    sha256, unhexlify, pack = hashlib.sha256, binascii.unhexlify, struct.Struct(f">{len(CANONICAL_FIELDS)}i").pack
    version, null = FORMAT_VERSION, NULL_LENGTH
    signed = {sequence: value.encode() for sequence, value in checkpoints.items()}
    expected, prev_hex, prev_raw = start, start_hash.encode(), bytes.fromhex(start_hash)
    matched = 0
    rest = b""
    intact = True
    with connection.cursor() as cursor, cursor.cursor.copy(_PG_COPY.format(after=start - 1)) as copy:
        chunks = iter(copy)
        for chunk in chunks:
            lines = (rest + bytes(chunk)).split(b"\n")
            rest = lines.pop()
            for line in lines:
                fields = line.split(b"\t")
                if b"\\" in line:
                    fields = [_copy_unescape(field) for field in fields]
                stored_hash = fields.pop()
                if fields.pop() != prev_hex or int(fields[0]) != expected or expected > head:
                    intact = False
                    break
                if fields[_DEPARTMENT] and fields[_ADDRESS]:
                    header = pack(*map(len, fields))
                else:
                    lengths = [*map(len, fields)]
                    if not fields[_DEPARTMENT]:
                        lengths[_DEPARTMENT] = null
                    if not fields[_ADDRESS]:
                        lengths[_ADDRESS] = null
                    header = pack(*lengths)
                digest = sha256(prev_raw + version + header + b"".join(fields)).digest()
                if digest != unhexlify(stored_hash) or (expected in signed and signed[expected] != stored_hash):
                    intact = False
                    break
                matched += expected in signed
                prev_hex, prev_raw = stored_hash, digest
                expected += 1
            if not intact:
                for _ in chunks:  # a COPY is read to its end before the connection takes another query
                    pass
                return False
    if rest:
        return False
    if expected > start:
        result.first_sequence, result.last_sequence = start, expected - 1
    result.entries, result.checkpoints_matched = expected - start, matched
    return True


def _read_checkpoints(result: VerifyResult) -> tuple[dict[int, str], dict[int, str]]:
    checkpoints: dict[int, str] = {}
    anchors: dict[int, str] = {}
    for checkpoint in checkpoints_read():
        if not checkpoint.valid:
            raise _Break(
                BreakKind.BAD_SIGNATURE,
                checkpoint.sequence if checkpoint.sequence >= 0 else None,
                f"line {checkpoint.line} of the checkpoint log (sequence {checkpoint.sequence}) has a bad "
                "signature or was not signed with the configured key",
            )
        result.checkpoints_valid += 1
        target = anchors if checkpoint.kind == KIND_ANCHOR else checkpoints
        if target.get(checkpoint.sequence, checkpoint.hash) != checkpoint.hash:
            raise _Break(
                BreakKind.BAD_SIGNATURE,
                checkpoint.sequence,
                f"two validly signed checkpoints disagree about entry {checkpoint.sequence}",
            )
        target[checkpoint.sequence] = checkpoint.hash
        if checkpoint.kind == KIND_CHECKPOINT and (
            result.latest_checkpoint is None or checkpoint.sequence >= result.latest_checkpoint.sequence
        ):
            result.latest_checkpoint = checkpoint
    return checkpoints, anchors


def _walk(result: VerifyResult, checkpoints: dict[int, str], start: int, start_hash: str, head_sequence: int) -> None:
    sha256 = hashlib.sha256
    expected = start
    prev_hash = start_hash  # stored hash of the previous entry
    prev_prev_hash: str | None = None
    prev_self_consistent = True
    for sequence, canonical_bytes, stored_prev, stored_hash in entry_rows(start - 1):
        if sequence != expected:
            if expected == start and result.anchor_sequence is not None:
                raise _Break(
                    BreakKind.ANCHOR_MISMATCH,
                    expected,
                    f"the chain should continue from the purge anchor with entry {expected}, "
                    f"but it starts at {sequence}",
                )
            raise _Break(BreakKind.MISSING, expected, f"entry {expected} is missing (the next present is {sequence})")
        if sequence > head_sequence:
            raise _Break(
                BreakKind.BEYOND_HEAD, sequence, f"entry {sequence} lies beyond the chain head ({head_sequence})"
            )
        self_consistent = sha256(bytes.fromhex(stored_prev) + canonical_bytes).hexdigest() == stored_hash
        if stored_prev != prev_hash:
            if expected == start:
                raise _Break(
                    BreakKind.ANCHOR_MISMATCH,
                    sequence,
                    f"entry {sequence} does not continue from the "
                    + ("purge anchor" if result.anchor_sequence is not None else "genesis hash"),
                )
            if self_consistent and prev_self_consistent:
                raise _Break(
                    BreakKind.REHASHED,
                    sequence - 1,
                    f"entry {sequence - 1} was modified and its hash recomputed: "
                    f"entry {sequence} still links to its original hash",
                )
            if stored_prev == prev_prev_hash or _hashes_as(
                sequence, canonical_bytes, sequence - 1, stored_prev, stored_hash
            ):
                raise _Break(
                    BreakKind.INSERTED,
                    sequence - 1,
                    f"entry {sequence - 1} was inserted: entry {sequence} was written to follow entry {sequence - 2}",
                )
            if _hashes_as(sequence, canonical_bytes, sequence + 1, stored_prev, stored_hash):
                raise _Break(
                    BreakKind.REORDERED,
                    sequence,
                    f"entry {sequence} was written as entry {sequence + 1}: an entry was deleted and the rest "
                    "renumbered, or entries were swapped",
                )
            raise _Break(
                BreakKind.LINK_BROKEN,
                sequence,
                f"entry {sequence} does not link to entry {sequence - 1} (entries inserted, deleted or reordered)",
            )
        if not self_consistent:
            if _hashes_as(sequence, canonical_bytes, sequence - 1, prev_prev_hash, stored_hash):
                raise _Break(
                    BreakKind.INSERTED,
                    sequence - 1,
                    f"entry {sequence - 1} was inserted: entry {sequence} was written as entry {sequence - 1}",
                )
            raise _Break(
                BreakKind.HASH_MISMATCH,
                sequence,
                f"entry {sequence} does not match its hash: a field was modified, the entry moved to another "
                "department, or entries were swapped",
            )
        signed = checkpoints.get(sequence)
        if signed is not None:
            if signed != stored_hash:
                raise _Break(
                    BreakKind.CHECKPOINT_MISMATCH,
                    sequence,
                    f"entry {sequence} differs from its signed checkpoint: the chain was rewritten at or before it",
                )
            result.checkpoints_matched += 1
        if result.first_sequence is None:
            result.first_sequence = sequence
        result.last_sequence = sequence
        result.entries += 1
        prev_prev_hash, prev_hash, prev_self_consistent = prev_hash, stored_hash, self_consistent
        expected += 1


PENDING_WARN_SECONDS = 60


@contextlib.contextmanager
def _snapshot() -> Iterator[None]:
    """One consistent view of head, anchor and entries while the sealer keeps appending.

    On PostgreSQL a REPEATABLE READ, READ ONLY transaction (unless called inside a transaction
    already, which then decides); SQLite's transaction is one snapshot already.
    """
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def audit_chain_verify() -> VerifyResult:
    """Verify the whole remaining chain; never raises for a break, reports it."""
    result = VerifyResult(ok=False)
    try:
        checkpoints, signed_anchors = _read_checkpoints(result)
        if not log_path().exists():
            result.warnings.append(f"no checkpoint log at {log_path()}: the chain is only checked for self-consistency")
        with _snapshot():
            anchor = AuditAnchor.objects.order_by("-sequence").first()
            start, start_hash = 1, GENESIS_HASH
            if anchor is not None:
                result.anchor_sequence = anchor.sequence
                start, start_hash = anchor.sequence + 1, anchor.hash
                if log_path().exists() and signed_anchors.get(anchor.sequence) != anchor.hash:
                    raise _Break(
                        BreakKind.ANCHOR_UNSIGNED,
                        anchor.sequence + 1,
                        f"the purge anchor at entry {anchor.sequence} is not in the signed checkpoint log",
                    )
            head = AuditChainHead.objects.get(pk=1)
            fast = connection.vendor == "postgresql"
            if not (fast and _fast_walk(result, checkpoints, start, start_hash, head.sequence)):
                result.entries = result.checkpoints_matched = 0
                result.first_sequence = result.last_sequence = None
                _walk(result, checkpoints, start, start_hash, head.sequence)
            last = result.last_sequence if result.last_sequence is not None else start - 1
            if head.sequence > last:
                raise _Break(
                    BreakKind.TRUNCATED,
                    last + 1,
                    f"the chain head names entry {head.sequence} but the chain ends at {last}: newest entries removed",
                )
            if result.last_sequence is not None and head.hash != _last_hash(result.last_sequence):
                raise _Break(BreakKind.HEAD_MISMATCH, last, f"the chain head's hash differs from entry {last}'s")
            ahead = [sequence for sequence in checkpoints if sequence > last]
            if ahead:
                raise _Break(
                    BreakKind.ROLLED_BACK,
                    last + 1,
                    f"a checkpoint was signed for entry {max(ahead)} but the chain ends at {last}: "
                    "the database was rolled back or its newest entries removed",
                )
    except _Break as found:
        result.break_kind, result.break_sequence, result.message = found.kind, found.sequence, found.message
        return result
    result.ok = True
    pending, oldest = pending_status()
    if oldest is not None and oldest > PENDING_WARN_SECONDS:
        result.warnings.append(
            f"{pending} entries are written but not chained yet, the oldest for {oldest:.0f}s: "
            "run manage.py audit_checkpoint (it seals them) and check the logs for sealing errors"
        )
    if result.entries:
        result.message = f"entries {result.first_sequence}..{result.last_sequence} verified ({result.entries})"
    else:
        result.message = "the chain is empty"
    return result


def _last_hash(sequence: int) -> str:
    from compliance.models import AuditEntry

    return AuditEntry.objects.values_list("hash", flat=True).get(sequence=sequence)
