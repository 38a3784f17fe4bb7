"""The sealer: moves committed pending entries into the hash chain.

Why two steps. ``audit_record`` runs inside the action's transaction. Had it extended the chain
there, it would have held the chain-head lock until that transaction committed, fsync
included: every audited action in the platform would queue behind one lock, at about one commit
latency each (~360 entries/s with 16 writers on the benchmark machine). Instead it inserts a
*pending* entry (no lock; writers never wait for each other, and the action and its entry still
commit together or not at all, AU-4), and the sealer chains pending entries in batches:

1. lock the chain head (``SELECT … FOR UPDATE SKIP LOCKED``: a busy head is never waited for);
2. read the pending entries this transaction can see, in id order;
3. give each the next sequence number, ``prev_hash`` and ``hash``, insert them into
   ``compliance_auditentry`` (the trigger checks each extends the chain), delete the pending
   rows (the trigger lets a pending row go only once the chain holds the same content), move
   the head; commit. One commit seals hundreds of entries.

Who seals, and when (docs/audit.md, "Writing"):

- ``audit_record``, in the same round trip, when the head is free and nothing else is pending
  (a lone writer, and every test, sees its entry chained at once);
- otherwise the background sealer of the writer's process, handed the entry's id after the
  commit; it keeps at it until that entry is chained, whoever chains it;
- ``audit_checkpoint`` (a timer) and ``audit_export`` seal first.

On PostgreSQL sealing runs server-side (``compliance_audit_seal`` in compliance/triggers.py,
one round trip per batch); SQLite, which serialises writers anyway, seals here in Python.

The window in which an entry is committed but not yet chained is up to about 100 ms under load.
A pending entry is protected by the database like a chained one (no UPDATE, no DELETE unless
already chained), but is not covered by a hash yet; ``audit_verify`` and ``/metrics`` report
pending entries and their age.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import DEFERRED as DEFERRED_FIELD

from compliance import libpq_append
from compliance.chain import WRITE_VERSION, chain_hash, sealed_version
from compliance.models import AuditChainHead, AuditEntry, AuditPending

logger = logging.getLogger(__name__)

BATCH = 1000  # pending entries chained per sealing transaction at most
CONTENT_FIELDS = tuple(field.name for field in AuditPending._meta.concrete_fields if field.name != "id")
BUSY = -1  # what the database sealer answers when another transaction holds the head
DEFERRED = -2  # compliance_audit_append left the entry to the background sealers (a backlog)
# In autocommit, run the append statement through the one private seam, prepared once per
# session (compliance/libpq_append.py: worth more than 20 % there under load); False: Django's
# cursor alone (the benchmark's --compare and the tests switch it off to measure and test it).
LIBPQ_SEAM = True


def server_side() -> bool:
    """PostgreSQL seals with compliance_audit_seal() (compliance/triggers.py): one round trip per
    batch. SQLite, which serialises writers anyway, seals here in Python."""
    return connection.vendor == "postgresql"


def _forward_after_commit(first: int | None, last: int | None) -> None:
    if not settings.AUDIT_SYSLOG_ADDRESS or first is None or last is None:
        return

    def forward() -> None:
        from compliance.forwarding import entry_as_dict, forward_entry

        for entry in AuditEntry.objects.filter(sequence__gte=first, sequence__lte=last).order_by("sequence"):
            forward_entry(entry_as_dict(entry))

    transaction.on_commit(forward, robust=True)


def _database_clock() -> datetime:
    """SQLite's clock (the PostgreSQL sealer reads its own, server-side)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")
        return datetime.fromisoformat(cursor.fetchone()[0]).replace(tzinfo=UTC)


def _seal_python(*, wait: bool) -> dict[int, AuditEntry] | None:
    head = AuditChainHead.objects.select_for_update(skip_locked=not wait).filter(pk=1).first()
    if head is None:
        return None
    sequence, prev_hash = head.sequence, head.hash
    sealed: dict[int, AuditEntry] = {}
    # The sealing clock, read before the pending entries are (as compliance_audit_seal does).
    clock = _database_clock()
    batch = list(AuditPending.objects.order_by("id")[:BATCH])
    entries = []
    for pending in batch:
        sequence += 1
        entry = AuditEntry(
            sequence=sequence,
            prev_hash=prev_hash,
            **{name: getattr(pending, name) for name in CONTENT_FIELDS},
            sealed_at=clock,
        )
        entry.format_version = sealed_version(pending.format_version)
        entry.hash = prev_hash = chain_hash(prev_hash, entry)
        entries.append(entry)
        sealed[pending.id] = entry
    if entries:
        AuditEntry.objects.bulk_create(entries, _from_sealer=True)
        AuditPending.objects.filter(id__in=list(sealed)).delete()
        AuditChainHead.objects.filter(pk=1).update(sequence=sequence, hash=prev_hash)
        _forward_after_commit(entries[0].sequence, sequence)
    return sealed


def seal_once(*, wait: bool = False) -> int | None:
    """Chain up to BATCH pending entries in the current transaction (its own in autocommit).

    Returns how many it chained, or None when another transaction holds the head and ``wait``
    is false. With ``wait`` it queues for the head.
    """
    if not server_side():
        with transaction.atomic(savepoint=False):
            sealed = _seal_python(wait=wait)
        return None if sealed is None else len(sealed)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT chained, first_sequence, last_sequence FROM compliance_audit_seal(%s, %s)", [BATCH, wait]
        )
        chained, first, last = cursor.fetchone()
    if chained == BUSY:
        return None
    _forward_after_commit(first, last)
    return chained


def seal_pending(*, wait: bool = False) -> int | None:
    """Chain what is pending, a batch per transaction; returns how many entries it chained.

    None when another transaction holds the head (and ``wait`` is false). Entries committed
    after the last batch was read are not this call's business: whoever wrote them has handed
    them to its process's background sealer, which makes sure they get chained.
    """
    total = 0
    while True:
        chained = seal_once(wait=wait)
        if chained is None:
            return total or None
        total += chained
        if chained < BATCH:
            return total


def append(values: dict, details_text: str, *, wait: bool) -> AuditEntry | AuditPending:
    """Write one entry (its content fields) in the current transaction; chain it at once if the
    head is free and nothing else is pending.

    One round trip on PostgreSQL (compliance_audit_append). Returns the chained entry, or the
    pending one when it was left to this process's background sealer (woken after the commit).
    ``details_text`` is the canonical JSON of ``values["details"]``. The entry is written in
    ``chain.WRITE_VERSION`` unless ``values`` names a format version. The returned entry's sealing
    clock is read from the database when first asked for (nothing on the write path needs it).
    """
    values = {"format_version": WRITE_VERSION, **values}
    if connection.vendor != "postgresql":
        pending = AuditPending(**values)
        with transaction.atomic(savepoint=False):
            pending.save(_from_audit_record=True)
            sealed = _seal_python(wait=wait)
        if sealed is None or len(sealed) == BATCH:
            transaction.on_commit(lambda: background_sealer.defer(pending.id))
        return pending if sealed is None else sealed.get(pending.id, pending)
    # The content as one JSON object: one parameter to send instead of sixteen; the database
    # unpacks it (json_populate_record).
    content = json.dumps(
        {**values, "timestamp": values["timestamp"].isoformat(), "details": details_text}, ensure_ascii=False
    )
    row = libpq_append.append_row(connection, content, BATCH, wait) if LIBPQ_SEAM else None
    if row is None:
        # Django's cursor, always inside a transaction: it refuses to run in one that already
        # failed, lets psycopg open the atomic block's transaction if this is its first
        # statement, and turns errors into Django's. No savepoint: a failed write aborts the
        # caller's transaction (AU-4). Unprepared: a session reset (DISCARD ALL) takes nothing
        # away that the transaction would need.
        with connection.cursor() as cursor:
            cursor.execute(_APPEND_SQL, [content, BATCH, wait])
            row = cursor.fetchone()
    pending_id, chained, first, last, sequence, prev_hash, entry_hash = row
    if chained in (BUSY, DEFERRED) or chained == BATCH:
        transaction.on_commit(lambda: background_sealer.defer(pending_id))
    if sequence is None:
        return _as_read(AuditPending, {"id": pending_id, **values})
    _forward_after_commit(first, last)
    return _as_read(
        AuditEntry,
        {
            "sequence": sequence,
            "prev_hash": prev_hash,
            "hash": entry_hash,
            **values,
            "format_version": sealed_version(values["format_version"]),
        },
    )


_APPEND_SQL = (
    "SELECT pending_id, chained, first_sequence, last_sequence, entry_sequence, entry_prev_hash, entry_hash "
    "FROM compliance_audit_append(%s::json, %s, %s)"
)


def _as_read(model: type[AuditEntry | AuditPending], values: dict) -> AuditEntry | AuditPending:
    """The instance as if read from the database (``Model.from_db``), without a round trip: the
    database stored exactly ``values`` (``details`` stays the dict passed in). A field missing
    from ``values`` (the sealing clock) is deferred: read from the database if asked for."""
    fields = model._meta.concrete_fields
    return model.from_db(
        connection.alias,
        [field.attname for field in fields],
        [values.get(field.attname, DEFERRED_FIELD) for field in fields],
    )


class BackgroundSealer:
    """One thread per process that makes sure the entries its writers left pending get chained.

    ``defer(id)`` (an in-memory call, no round trip) runs after the commit of an entry that was
    not chained at once. The thread waits a moment, so that one round trip serves every writer of
    the process, asks which of its entries are still pending (another process's sealer has
    usually chained them by then) and, if any are, seals everything pending. While another
    transaction holds the head it tries again with a growing pause (up to a second), so an entry
    whose would-be sealer rolled back is chained as soon as the head is free. Idle, it holds no
    connection.
    """

    COALESCE_SECONDS = 0.1
    MAX_PAUSE_SECONDS = 1.0

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._waiting: set[int] = set()
        self._thread: threading.Thread | None = None

    def defer(self, pending_id: int) -> None:
        with self._lock:
            self._waiting.add(pending_id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="audit-sealer", daemon=True)
                self._thread.start()
        if not self._event.is_set():  # under load it mostly is: no need to take its lock again
            self._event.set()

    def _run(self) -> None:
        while True:
            self._event.wait()
            self._event.clear()
            try:
                self._chain_waiting()
            except Exception:
                logger.exception("audit sealing failed; pending entries wait for the next seal")
            finally:
                connection.close()  # back to the pool: an idle sealer holds no connection

    def _still_pending(self) -> set[int]:
        with self._lock:
            waiting = set(self._waiting)
        if not waiting:
            return set()
        with connection.cursor() as cursor:
            if server_side():
                cursor.execute("SELECT id FROM compliance_auditpending WHERE id = ANY(%s)", [list(waiting)])
                left = {row[0] for row in cursor.fetchall()}
            else:
                left = set(AuditPending.objects.filter(id__in=waiting).values_list("id", flat=True))
        with self._lock:
            self._waiting -= waiting - left
        return left

    def _chain_waiting(self) -> None:
        pause = self.COALESCE_SECONDS
        while True:
            time.sleep(pause)
            if not self._still_pending():
                return
            if seal_pending() is None:
                # Another transaction holds the head: a sealer looks again until empty, but an
                # action's transaction that rolls back does not. Try again until it is free.
                pause = min(pause * 2, self.MAX_PAUSE_SECONDS)
            else:
                pause = self.COALESCE_SECONDS


background_sealer = BackgroundSealer()


def pending_status() -> tuple[int, float | None]:
    """(number of pending entries, age in seconds of the oldest), for metrics and audit_verify."""
    from django.utils import timezone

    oldest = AuditPending.objects.order_by("id").values_list("timestamp", flat=True).first()
    if oldest is None:
        return 0, None
    return AuditPending.objects.count(), (timezone.now() - oldest).total_seconds()
