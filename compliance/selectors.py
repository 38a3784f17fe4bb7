"""Reads of the audit trail for the auditor console."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet

from compliance.checkpoints import Checkpoint, checkpoint_latest
from compliance.models import AuditArchive, AuditChainHead, AuditEntry

# The console's filter keys that compare one column, and the look-up each is.
_FILTER_LOOKUPS = {
    "since": "timestamp__gte",
    "until": "timestamp__lt",
    "user": "actor_name",
    "department": "department_slug",
    "event_type": "event_type",
    "outcome": "outcome",
    "request_id": "request_id",
}


def audit_entry_list(*, filters: dict[str, Any]) -> QuerySet[AuditEntry]:
    """Entries matching the console's filters, newest first (all keys optional)."""
    queryset = AuditEntry.objects.order_by("-sequence")
    for key, lookup in _FILTER_LOOKUPS.items():
        if filters.get(key):
            queryset = queryset.filter(**{lookup: filters[key]})
    if filters.get("object"):
        term = filters["object"]
        queryset = queryset.filter(Q(object_type=term) | Q(object_id=term) | Q(object_repr__icontains=term))
    return queryset


@dataclass(frozen=True)
class EntryPage:
    """One page of the console's list, newest first, by keyset on the sequence number (no
    OFFSET: a page costs the same wherever it is in the trail)."""

    entries: list[AuditEntry]
    size: int
    before: int | None  # the page holds entries older than this (None: from the newest)
    older: int | None  # ``before`` of the next, older page (None: this is the last)
    newer: int | None  # ``before`` of the previous, newer page (None: this is the first)

    def __iter__(self):
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def audit_entry_page(*, filters: dict[str, Any], size: int, before: int | None = None) -> EntryPage:
    """The ``size`` newest entries matching ``filters`` with a sequence below ``before``."""
    queryset = audit_entry_list(filters=filters)
    window = queryset if before is None else queryset.filter(sequence__lt=before)
    rows = list(window[: size + 1])
    entries, more = rows[:size], len(rows) > size
    older = entries[-1].sequence if more and entries else None
    newer = None
    if before is not None:
        # The newer page is the ``size`` entries just above this one: its ``before`` is the
        # sequence after the newest of them (None when they are the newest of all).
        above = list(
            queryset.filter(sequence__gte=before).order_by("sequence").values_list("sequence", flat=True)[: size + 1]
        )
        if above:
            newer = above[size] if len(above) > size else None
            if newer is None:
                newer = 0  # the first page
    return EntryPage(entries, size, before, older, newer)


def audit_entry_get(*, sequence: int) -> AuditEntry | None:
    return AuditEntry.objects.filter(sequence=sequence).first()


def audit_archive_list() -> QuerySet[AuditArchive]:
    return AuditArchive.objects.order_by("-created_at")


@dataclass(frozen=True)
class ChainStatus:
    head_sequence: int
    latest_checkpoint: Checkpoint | None
    checkpoint_matches: bool | None  # None: no checkpoint, or its entry was purged

    @property
    def entries_since_checkpoint(self) -> int | None:
        if self.latest_checkpoint is None:
            return None
        return self.head_sequence - self.latest_checkpoint.sequence


def audit_chain_status() -> ChainStatus:
    """At a glance: the head, the latest signed checkpoint and whether its entry still matches.

    The full recomputation is ``manage.py audit_verify`` (scheduled); this is the cheap check.
    """
    head = AuditChainHead.objects.get(pk=1)
    latest = checkpoint_latest()
    matches = None
    if latest is not None:
        stored = AuditEntry.objects.filter(sequence=latest.sequence).values_list("hash", flat=True).first()
        matches = None if stored is None else stored == latest.hash
    return ChainStatus(head.sequence, latest, matches)
