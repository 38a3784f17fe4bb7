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
unknown_format      the entry names a format version that is not registered (compliance.chain):
                    its version was changed, or it was written by a newer release
checkpoint_missing  the chain records a checkpoint (an audit.checkpoint entry, an export) that
                    the checkpoint log does not hold: the log was deleted, shortened or
                    replaced by an older copy
tables_missing      an audit table does not exist (dropped)
head_missing        the chain head row does not exist (deleted)
unreadable          the audit tables cannot be read as this release expects (a column dropped
                    or altered: named in the message, or the database error), or the
                    checkpoint log cannot be read (not a file, no permission, not UTF-8)
==================  ======================================================================

Besides breaks, the walk reports **back-dated entries** (``VerifyResult.backdated``): entries
whose own time is earlier than the sealing clock of the chain head they were chained after, by
more than BACKDATING_TOLERANCE, i.e. inserted into the pending table with a time in the past.
The chain itself is intact around them (it faithfully holds what was inserted), so they are a
finding about those entries, not a break: ``audit_verify`` lists them and exits 3.
"""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from compliance.chain import (
    NULL_LENGTH,
    SEALING_CLOCK,
    CanonicalFormat,
    format_timestamp,
    formats,
    formats_fields,
)
from compliance.checkpoints import KIND_ANCHOR, KIND_CHECKPOINT, Checkpoint, checkpoints_read, log_path
from compliance.events import EventType
from compliance.models import GENESIS_HASH, AuditAnchor, AuditArchive, AuditChainHead, AuditEntry, AuditPending
from compliance.sealing import BATCH, pending_status
from compliance.triggers import GUARDED_TABLES


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
    UNKNOWN_FORMAT = "unknown_format"
    CHECKPOINT_MISSING = "checkpoint_missing"
    TABLES_MISSING = "tables_missing"
    HEAD_MISSING = "head_missing"
    UNREADABLE = "unreadable"


class BackdatedEntry(NamedTuple):
    """An entry whose own time precedes, beyond the tolerance, a seal it was not chained by."""

    sequence: int
    timestamp: str  # the entry's own time (canonical text)
    sealed_after: str  # the reference seal's clock (canonical text, the database's clock)


BACKDATED_LISTED = 100  # back-dated entries listed at most (all are counted)


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
    backdated: list[BackdatedEntry] = field(default_factory=list)  # the first BACKDATED_LISTED
    backdated_count: int = 0

    def backdated_add(self, sequence: int, stamp: bytes, reference: bytes) -> None:
        self.backdated_count += 1
        if len(self.backdated) < BACKDATED_LISTED:
            self.backdated.append(BackdatedEntry(sequence, stamp.decode(), reference.decode()))


class _Break(Exception):
    def __init__(self, kind: BreakKind, sequence: int | None, message: str):
        super().__init__(message)
        self.kind, self.sequence, self.message = kind, sequence, message


# The columns read: the entry's format version, every field a registered format hashes
# (compliance.chain.formats_fields(), audit-v2's first), then prev_hash and hash. Every column
# but the timestamps is stored as the very text that was hashed (details as canonical JSON text,
# the address in compressed form), so the database's text output is the hashed text. Built per
# call from the registry, which tests extend.
FETCH_SIZE = 5000
PROGRESS_EVERY = 5000  # entries between two progress reports of the detailed walk
_COPY_ESCAPES = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v", b"\\": b"\\"}
_COPY_ESCAPE = re.compile(rb"\\(.)")


# How much earlier than the chain head's sealing clock an entry's own time may be. An entry is
# timed by audit_record, inside its action's transaction, and is chained once that commits: if a
# seal ran meanwhile, the entry's time precedes that seal by as much as the rest of its
# transaction took (and by the skew between the application's clock and the database's). Beyond
# this, the entry was not written when it says: back-dated into the pending table.
BACKDATING_TOLERANCE = timedelta(minutes=10)


def _clock_positions(registered: CanonicalFormat) -> tuple[int, int] | None:
    """Where an entry of this format has its own time and its sealing clock (None: no clock)."""
    if SEALING_CLOCK not in registered.fields:
        return None
    return registered.fields.index("timestamp"), registered.fields.index(SEALING_CLOCK)


def _backdated(stamp: bytes, reference: bytes) -> bool:
    """Is the entry's time (a canonical timestamp text) earlier than the reference sealing clock
    by more than the tolerance? Asked only when it is earlier at all (the texts compare in time
    order), so the parsing is off the hot path."""
    return datetime.fromisoformat(stamp.decode()) < datetime.fromisoformat(reference.decode()) - BACKDATING_TOLERANCE


class SealingClocks:
    """The reference an entry's own time is checked against: the clock of the seal before its
    own that chained everything pending it could see (one that took fewer than the sealer's
    batch limit). An entry chained later was not committed at that seal, so it was written
    after it, or during a transaction still open then.

    Entries sealed together share their clock, so a run of equal clocks is one seal. Entries
    without a clock (chained before audit-v4) reset the reference. ``check`` returns the
    reference an entry is back-dated against, or None.
    """

    __slots__ = ("batch", "size", "reference")

    def __init__(self) -> None:
        self.batch: bytes | None = None
        self.size = 0
        self.reference: bytes | None = None

    def check(self, stamp: bytes, sealed: bytes | None) -> bytes | None:
        if sealed is None:
            self.batch = self.reference = None
            self.size = 0
            return None
        if sealed != self.batch:
            if self.batch is not None and self.size < BATCH:
                self.reference = self.batch
            self.batch, self.size = sealed, 0
        self.size += 1
        reference = self.reference
        if reference is not None and stamp < reference and _backdated(stamp, reference):
            return reference
        return None


def _timestamp_fields() -> set[str]:
    return set().union(*(registered.timestamp_fields for registered in formats()))


def _columns(*, server_timestamps: bool) -> str:
    """Every registered field, then the format version, prev_hash and hash."""
    timestamps = _timestamp_fields()
    columns = []
    for name in formats_fields():
        if server_timestamps and name in timestamps:
            columns.append(f"""to_char("{name}" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')""")
        else:
            columns.append(f'"{name}"')
    return ", ".join([*columns, "format_version", "prev_hash", "hash"])


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


class EntryRow(NamedTuple):
    """One stored entry as the verifier sees it: its fields' hashed texts, in its own format."""

    sequence: int
    version: int
    format: CanonicalFormat | None  # None: the version is not registered
    fields: list[bytes | None]  # in format.fields order (empty for an unknown format)
    prev_hash: str
    hash: str

    @property
    def canonical(self) -> bytes | None:
        return None if self.format is None else self.format.encode(self.fields)


def _hashes_as(row: EntryRow, as_sequence: int, prev_hash: str | None) -> bool:
    """Would this entry hash correctly had it been written as ``as_sequence`` after ``prev_hash``?

    Only used once a break is found, to tell a renumbering (insertion, deletion, swap) from an edit.
    """
    if prev_hash is None or as_sequence < 1 or row.format is None:
        return False
    renumbered = [
        str(as_sequence).encode() if name == "sequence" else value
        for name, value in zip(row.format.fields, row.fields, strict=True)
    ]
    return hashlib.sha256(bytes.fromhex(prev_hash) + row.format.encode(renumbered)).hexdigest() == row.hash


def entry_rows(after_sequence: int = 0) -> Iterator[EntryRow]:
    """Every entry after ``after_sequence``, in sequence order.

    The plain, any-database path: SQLite always, and PostgreSQL when the fast pass found a break
    and the detailed walk names it.
    """
    names = formats_fields()
    timestamps = _timestamp_fields()
    # Per registered version: which of the columns it hashes, and which of those are timestamps.
    plans = {
        registered.version: (registered, [(names.index(name), name in timestamps) for name in registered.fields])
        for registered in formats()
    }
    sql = f"SELECT {_columns(server_timestamps=False)} FROM compliance_auditentry WHERE sequence > %s ORDER BY sequence"  # noqa: S608  (the registry's names only)
    postgres = connection.vendor == "postgresql"
    cursor = connection.chunked_cursor() if postgres else connection.cursor()
    sequence_column = names.index("sequence")
    try:
        cursor.execute(sql, [after_sequence])
        while rows := cursor.fetchmany(FETCH_SIZE):
            for row in rows:
                version, sequence = row[-3], row[sequence_column]
                plan = plans.get(version)
                if plan is None:
                    yield EntryRow(sequence, version, None, [], row[-2], row[-1])
                    continue
                registered, columns = plan
                fields = [
                    None
                    if row[column] is None
                    else _timestamp_text(row[column])
                    if timestamp
                    else str(row[column]).encode()
                    for column, timestamp in columns
                ]
                yield EntryRow(sequence, version, registered, fields, row[-2], row[-1])
    finally:
        cursor.close()


def copy_statement(after_sequence: int) -> str:
    """The fast pass's COPY of every entry after ``after_sequence`` (the server prints the
    timestamps in their canonical form: it has a core of its own, the Python loop is the
    bottleneck). The empty string stands for NULL (see _fast_plans)."""
    return (
        f"COPY (SELECT {_columns(server_timestamps=True)} FROM compliance_auditentry "  # noqa: S608  (the registry's names only)
        f"WHERE sequence > {after_sequence:d} ORDER BY sequence) TO STDOUT (NULL '')"
    )


def _fast_plans() -> tuple[dict[bytes, tuple], int]:
    """How the fast pass reads each registered version from a COPY line (the registered fields,
    then the version, prev_hash and hash; the last three popped): (its tag, how many leading
    columns its fields are, if they are, else None, their positions, a getter of its fields that
    may be NULL, their positions, its header packer, where its own time and sealing clock are);
    and the position of the sequence number."""
    names = formats_fields()
    plans = {}
    for registered in formats():
        positions = [names.index(name) for name in registered.fields]
        # COPY prints NULL as the empty string: only columns that can be NULL are read as NULL
        # (department_id, a number; source_ip, never empty by a CHECK constraint).
        nullable = tuple(index for index, name in enumerate(registered.fields) if AuditEntry._meta.get_field(name).null)
        plans[str(registered.version).encode()] = (
            registered.tag,
            len(positions) if positions == list(range(len(positions))) else None,
            positions,
            operator.itemgetter(*nullable, *nullable) if nullable else (lambda fields: (b"-",)),
            nullable,
            registered.pack_lengths,
            _clock_positions(registered),
        )
    return plans, names.index("sequence")


def _no_progress(last_checked: int) -> None:
    pass


def _fast_walk(
    result: VerifyResult,
    checkpoints: dict[int, str],
    start: int,
    start_hash: str,
    head: int,
    progress: Callable[[int], None] = _no_progress,
) -> bool:
    """The happy path on PostgreSQL: one COPY stream, each entry checked in a few C calls.

    True if every entry is in sequence, in a registered format, links to the one before and
    matches its hash and any signed checkpoint; False at the first anomaly, which the detailed
    walk then names. Back-dated entries are recorded on the way (SealingClocks, inlined). The loop is the benchmark's
    hot path (docs/audit.md): keep per-entry Python to a minimum.
    """
    sha256, unhexlify, null = hashlib.sha256, binascii.unhexlify, NULL_LENGTH
    plans, sequence_column = _fast_plans()
    signed = {sequence: value.encode() for sequence, value in checkpoints.items()}
    expected, prev_hex, prev_raw = start, start_hash.encode(), bytes.fromhex(start_hash)
    matched = 0
    rest = b""
    intact = True
    columns = len(formats_fields())
    batch_clock = reference = None  # SealingClocks' state, inlined: the loop is the hot path
    batch_size = 0
    # psycopg's own cursor runs the COPY: its errors become Django's (a column dropped or altered
    # meanwhile is then reported as unreadable, like any other read error).
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(copy_statement(start - 1)) as copy,
    ):
        chunks = iter(copy)
        for chunk in chunks:
            lines = (rest + bytes(chunk)).split(b"\n")
            rest = lines.pop()
            for line in lines:
                row = line.split(b"\t")
                if b"\\" in line:
                    row = [_copy_unescape(field) for field in row]
                stored_hash = row.pop()
                stored_prev = row.pop()
                plan = plans.get(row.pop())
                if plan is None or stored_prev != prev_hex or int(row[sequence_column]) != expected or expected > head:
                    intact = False
                    break
                tag, leading, positions, present, nullable, pack, clock = plan
                if leading == columns:
                    fields = row
                elif leading is not None:
                    fields = row[:leading]
                else:
                    fields = [row[position] for position in positions]
                if all(present(fields)):
                    header = pack(*map(len, fields))
                else:
                    lengths = [*map(len, fields)]
                    for index in nullable:
                        if not fields[index]:
                            lengths[index] = null
                    header = pack(*lengths)
                digest = sha256(prev_raw + tag + header + b"".join(fields)).digest()
                if digest != unhexlify(stored_hash) or (expected in signed and signed[expected] != stored_hash):
                    intact = False
                    break
                if clock is None:
                    batch_clock = reference = None
                    batch_size = 0
                else:
                    sealed = fields[clock[1]]
                    if sealed != batch_clock:
                        if batch_clock is not None and batch_size < BATCH:
                            reference = batch_clock
                        batch_clock, batch_size = sealed, 0
                    batch_size += 1
                    stamp = fields[clock[0]]
                    if reference is not None and stamp < reference and _backdated(stamp, reference):
                        result.backdated_add(expected, stamp, reference)
                matched += expected in signed
                prev_hex, prev_raw = stored_hash, digest
                expected += 1
            if not intact:
                for _ in chunks:  # a COPY is read to its end before the connection takes another query
                    pass
                return False
            progress(expected - 1)
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


def _walk(
    result: VerifyResult,
    checkpoints: dict[int, str],
    start: int,
    start_hash: str,
    head_sequence: int,
    progress: Callable[[int], None] = _no_progress,
) -> None:
    sha256 = hashlib.sha256
    expected = start
    prev_hash = start_hash  # stored hash of the previous entry
    prev_prev_hash: str | None = None
    prev_self_consistent = True
    clocks = SealingClocks()
    clock_positions = {registered.version: _clock_positions(registered) for registered in formats()}
    for row in entry_rows(start - 1):
        sequence, stored_prev, stored_hash = row.sequence, row.prev_hash, row.hash
        if (sequence - start) % PROGRESS_EVERY == 0:
            progress(sequence - 1)
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
        if row.format is None:
            raise _Break(
                BreakKind.UNKNOWN_FORMAT,
                sequence,
                f"entry {sequence} names format version {row.version}, which is not registered: its version "
                "was changed, or a newer release wrote it",
            )
        self_consistent = sha256(bytes.fromhex(stored_prev) + row.canonical).hexdigest() == stored_hash
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
            if stored_prev == prev_prev_hash or _hashes_as(row, sequence - 1, stored_prev):
                raise _Break(
                    BreakKind.INSERTED,
                    sequence - 1,
                    f"entry {sequence - 1} was inserted: entry {sequence} was written to follow entry {sequence - 2}",
                )
            if _hashes_as(row, sequence + 1, stored_prev):
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
            if _hashes_as(row, sequence - 1, prev_prev_hash):
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
        clock = clock_positions[row.version]
        stamp, sealed = (row.fields[clock[0]], row.fields[clock[1]]) if clock else (b"", None)
        reference = clocks.check(stamp, sealed)
        if reference is not None:
            result.backdated_add(sequence, stamp, reference)
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


def audit_chain_verify(progress: Callable[[int], None] | None = None) -> VerifyResult:
    """Verify the whole remaining chain; never raises for a break, reports it. ``progress`` is
    told the sequence number of the last entry checked so far, now and then (every COPY chunk on
    PostgreSQL, every ``PROGRESS_EVERY`` entries otherwise): it must be quick."""
    result = VerifyResult(ok=False)
    report = progress or _no_progress
    try:
        with _snapshot():
            _tables_present()
            _columns_as_expected()
            head = AuditChainHead.objects.filter(pk=1).first()
            if head is None:
                raise _Break(
                    BreakKind.HEAD_MISSING,
                    None,
                    "the chain head row is missing: it was deleted with the table owner's rights",
                )
            anchor = AuditAnchor.objects.order_by("-sequence").first()
            # Read once the snapshot is taken, so that every checkpoint of an entry it sees is
            # in the log by now (but the one being signed this very moment: _checkpoints_recorded).
            try:
                log_present = log_path().exists()
                checkpoints, signed_anchors = _read_checkpoints(result)
            except (OSError, UnicodeDecodeError) as error:
                raise _Break(
                    BreakKind.UNREADABLE, None, f"the checkpoint log ({log_path()}) cannot be read: {error}"
                ) from None
            start, start_hash = 1, GENESIS_HASH
            if anchor is not None:
                result.anchor_sequence = anchor.sequence
                start, start_hash = anchor.sequence + 1, anchor.hash
                if signed_anchors.get(anchor.sequence) != anchor.hash:
                    raise _Break(
                        BreakKind.ANCHOR_UNSIGNED,
                        anchor.sequence + 1,
                        f"the purge anchor at entry {anchor.sequence} is not in the signed checkpoint log",
                    )
            fast = connection.vendor == "postgresql"
            if not (fast and _fast_walk(result, checkpoints, start, start_hash, head.sequence, report)):
                result.entries = result.checkpoints_matched = result.backdated_count = 0
                result.first_sequence = result.last_sequence = None
                result.backdated = []
                report(start - 1)
                _walk(result, checkpoints, start, start_hash, head.sequence, report)
            last = result.last_sequence if result.last_sequence is not None else start - 1
            report(last)
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
            _checkpoints_recorded(result, checkpoints, start, log_present)
            pending, oldest = pending_status()
    except _Break as found:
        result.break_kind, result.break_sequence, result.message = found.kind, found.sequence, found.message
        return result
    except DatabaseError as error:
        # Damage the checks above did not foresee (a missing table, column or head row is named
        # there): report what the database said, never crash.
        result.break_kind = BreakKind.UNREADABLE
        result.message = f"the audit tables cannot be read as this release expects them: {error}".strip()
        return result
    result.ok = True
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


def _tables_present() -> None:
    missing = [table for table in GUARDED_TABLES if table not in set(connection.introspection.table_names())]
    if missing:
        raise _Break(
            BreakKind.TABLES_MISSING,
            None,
            f"audit table{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"{'do' if len(missing) > 1 else 'does'} not exist: dropped (or the database was never migrated)",
        )


AUDIT_MODELS = (AuditEntry, AuditPending, AuditChainHead, AuditArchive, AuditAnchor)


def _column_types(table: str) -> dict[str, str]:
    """The columns of ``table`` and their types (PostgreSQL: the type's name without modifiers;
    SQLite: the declared type)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                [table],
            )
        else:
            cursor.execute("SELECT name, type FROM pragma_table_info(%s)", [table])
        return {name: type_name.lower() for name, type_name in cursor.fetchall()}


def _type_name(db_type: str) -> str:
    """What _column_types reports for a column created as ``db_type``."""
    if connection.vendor != "postgresql":
        return db_type.lower()
    with connection.cursor() as cursor:
        cursor.execute("SELECT format_type(%s::regtype, NULL)", [db_type])
        return cursor.fetchone()[0]


def _columns_as_expected() -> None:
    """Every column this release reads is there, with the type its migrations gave it.

    A dropped or renamed column would fail the reads below with a database error; a column whose
    type was altered may still be read, re-rendered (``jsonb`` reorders and re-spaces the details
    that were hashed as text), and look like edited entries. Either way the tables are not what
    the chain was written into: reported as unreadable, naming the columns. Columns a later
    release added are not this release's business.
    """
    problems = []
    expected_names: dict[str, str] = {}
    for model in AUDIT_MODELS:
        table = model._meta.db_table
        actual = _column_types(table)
        for model_field in model._meta.concrete_fields:
            found = actual.get(model_field.column)
            if found is None:
                problems.append(f"{table}.{model_field.column} is missing")
                continue
            db_type = model_field.db_type(connection)
            if db_type not in expected_names:
                expected_names[db_type] = _type_name(db_type)
            if found != expected_names[db_type]:
                problems.append(f"{table}.{model_field.column} is {found}, not {expected_names[db_type]}")
    if problems:
        raise _Break(
            BreakKind.UNREADABLE,
            None,
            f"the audit tables cannot be read as this release expects them: {'; '.join(problems)} "
            "(dropped or altered with the table owner's rights)",
        )


# A checkpoint's entry is committed first and signed right after (checkpoints.checkpoint_create):
# one this recent may still be on its way into the log.
CHECKPOINT_SIGNING_GRACE = timedelta(seconds=60)


def _checkpoints_recorded(result: VerifyResult, checkpoints: dict[int, str], start: int, log_present: bool) -> None:
    """The chain itself records the checkpoints that were signed: each ``audit.checkpoint`` entry
    signed its own sequence, each export the last entry it exported (before its entry was
    written). The log must hold the newest of them: a log that does not is missing, shortened
    or an older copy, and would let a rewrite after its end pass. Older ones it lacks (a line
    lost, or a signature that failed once) cannot hide a rewrite, since the newest covers
    everything before it: a warning.

    Read from the entries just verified, in the same snapshot.
    """
    recorded: dict[int, str] = {}  # signed sequence -> what recorded it
    recent = timezone.now() - CHECKPOINT_SIGNING_GRACE
    entries = AuditEntry.objects.filter(department_id__isnull=True, sequence__gte=start)
    for sequence, when in entries.filter(event_type=EventType.AUDIT_CHECKPOINT).values_list("sequence", "timestamp"):
        if when < recent or sequence in checkpoints:
            recorded[sequence] = f"audit.checkpoint entry {sequence}"
    for sequence, details in entries.filter(event_type=EventType.AUDIT_EXPORT).values_list("sequence", "details"):
        signed = details.get("last_sequence") if details.get("entries") else None
        if isinstance(signed, int) and signed >= start:
            recorded.setdefault(signed, f"the export recorded in entry {sequence}")
    if not recorded:
        if not log_present:
            result.warnings.append(f"no checkpoint log at {log_path()}: the chain is only checked for self-consistency")
        return
    newest = max(recorded)
    if newest not in checkpoints:
        where = "does not exist" if not log_present else "does not hold it"
        raise _Break(
            BreakKind.CHECKPOINT_MISSING,
            newest,
            f"{recorded[newest]} records a checkpoint signed at entry {newest}, but the checkpoint log "
            f"({log_path()}) {where}: the log was deleted, shortened or replaced by an older copy",
        )
    lost = sorted(sequence for sequence in recorded if sequence not in checkpoints)
    if lost:
        result.warnings.append(
            f"the checkpoint log lacks {len(lost)} older checkpoint(s) the chain records (first at entry {lost[0]}); "
            f"the newest, at entry {newest}, is there and covers them"
        )


def _last_hash(sequence: int) -> str:
    return AuditEntry.objects.values_list("hash", flat=True).get(sequence=sequence)
