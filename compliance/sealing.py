"""The sealer: moves committed pending entries into the hash chain.

Why two steps. ``audit_record`` runs inside the action's transaction. Had it extended the chain
there, it would have held the chain-head lock until that transaction committed, fsync
included: every audited action in the platform would queue behind one lock, at about one commit
latency each (~360 entries/s with 16 writers on the benchmark machine). Instead it inserts a
*pending* entry (no lock; writers never wait for each other, and the action and its entry still
commit together or not at all, AU-4), and the sealer chains pending entries in batches:

1. lock the chain head (``SELECT … FOR UPDATE SKIP LOCKED``: a busy sealer is never waited for);
2. read the pending entries this transaction can see, in id order;
3. give each the next sequence number, ``prev_hash`` and ``hash``, insert them into
   ``compliance_auditentry`` (the trigger checks each extends the chain), delete the pending
   rows (the trigger lets a pending row go only once the chain holds the same content), move
   the head; commit. One commit seals hundreds of entries.

Who seals, and when:

- ``audit_record`` tries in its own transaction (so a lone writer, and every test, sees its
  entry chained at once); if another transaction holds the head it does not wait;
- after every commit that wrote an entry, ``seal_pending`` runs in short transactions of its
  own. A writer that finds the head busy leaves its entry to the holder, and every holder looks
  again after it releases the head, so an entry is not left behind while writes go on;
- ``audit_checkpoint`` (a timer) and ``audit_export`` seal first, which bounds the wait of an
  entry whose would-be sealer rolled back in a quiet system.

The window in which an entry is committed but not yet chained is the time to the next seal
(milliseconds under load). A pending entry is protected by the database like a chained one (no
UPDATE, no DELETE unless already chained), but is not covered by a hash yet; ``audit_verify``
and ``/metrics`` report pending entries and their age.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

from compliance.chain import chain_hash
from compliance.models import AuditChainHead, AuditEntry, AuditPending

logger = logging.getLogger(__name__)

BATCH = 500  # pending entries chained per INSERT (a few hundred kB of SQL at most)
MAX_ROUNDS = 20  # a post-commit sealer gives up after this many rounds under sustained load
CONTENT_FIELDS = tuple(field.name for field in AuditPending._meta.concrete_fields if field.name != "id")


def _lock_head(*, wait: bool) -> AuditChainHead | None:
    return AuditChainHead.objects.select_for_update(skip_locked=not wait).filter(pk=1).first()


def seal_in_transaction(*, wait: bool = False) -> dict[int, AuditEntry] | None:
    """Chain every pending entry this transaction can see; call inside ``transaction.atomic``.

    Returns the chained entries by pending id, or None when another transaction holds the head
    and ``wait`` is false. With ``wait`` it queues for the head (checkpoints, which must sign a
    chained entry of their own).
    """
    head = _lock_head(wait=wait)
    if head is None:
        return None
    sequence, prev_hash = head.sequence, head.hash
    sealed: dict[int, AuditEntry] = {}
    while True:
        batch = list(AuditPending.objects.order_by("id")[:BATCH])
        if not batch:
            break
        entries = []
        for pending in batch:
            sequence += 1
            entry = AuditEntry(
                sequence=sequence, prev_hash=prev_hash, **{name: getattr(pending, name) for name in CONTENT_FIELDS}
            )
            entry.hash = prev_hash = chain_hash(prev_hash, entry)
            entries.append(entry)
            sealed[pending.id] = entry
        AuditEntry.objects.bulk_create(entries, _from_sealer=True)
        AuditPending.objects.filter(id__in=[pending.id for pending in batch]).delete()
        if len(batch) < BATCH:
            break
    if sealed:
        AuditChainHead.objects.filter(pk=1).update(sequence=sequence, hash=prev_hash)
        if settings.AUDIT_SYSLOG_ADDRESS:
            from compliance.forwarding import entry_as_dict, forward_entry

            payloads = [entry_as_dict(entry) for entry in sealed.values()]
            transaction.on_commit(lambda: [forward_entry(payload) for payload in payloads], robust=True)
    return sealed


def seal_pending() -> int:
    """Chain what is pending in transactions of its own; returns how many entries it chained.

    Call outside a transaction (``audit_record`` schedules it with ``transaction.on_commit``).
    Returns early when another sealer holds the head: that one looks again after it commits.
    """
    total = 0
    for _ in range(MAX_ROUNDS):
        if not AuditPending.objects.exists():
            break
        with transaction.atomic():
            sealed = seal_in_transaction(wait=False)
        if sealed is None:
            break
        total += len(sealed)
    return total


def seal_pending_after_commit() -> None:
    """``seal_pending`` for ``transaction.on_commit``: the action has committed, so a failure
    here is logged and counted, never raised; the entry stays pending and the next seal takes it."""
    try:
        seal_pending()
    except Exception:
        logger.exception("audit sealing failed; pending entries wait for the next seal")


def pending_status() -> tuple[int, float | None]:
    """(number of pending entries, age in seconds of the oldest), for metrics and audit_verify."""
    from django.utils import timezone

    oldest = AuditPending.objects.order_by("id").values_list("timestamp", flat=True).first()
    if oldest is None:
        return 0, None
    return AuditPending.objects.count(), (timezone.now() - oldest).total_seconds()
