"""Reads of the audit trail for the auditor console."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet

from compliance.checkpoints import Checkpoint, checkpoint_latest
from compliance.models import AuditArchive, AuditChainHead, AuditEntry


def audit_entry_list(*, filters: dict[str, Any]) -> QuerySet[AuditEntry]:
    """Entries matching the console's filters, newest first (all keys optional)."""
    queryset = AuditEntry.objects.order_by("-sequence")
    if filters.get("since"):
        queryset = queryset.filter(timestamp__gte=filters["since"])
    if filters.get("until"):
        queryset = queryset.filter(timestamp__lt=filters["until"])
    if filters.get("user"):
        queryset = queryset.filter(actor_name=filters["user"])
    if filters.get("department"):
        queryset = queryset.filter(department_slug=filters["department"])
    if filters.get("event_type"):
        queryset = queryset.filter(event_type=filters["event_type"])
    if filters.get("outcome"):
        queryset = queryset.filter(outcome=filters["outcome"])
    if filters.get("object"):
        term = filters["object"]
        queryset = queryset.filter(Q(object_type=term) | Q(object_id=term) | Q(object_repr__icontains=term))
    if filters.get("request_id"):
        queryset = queryset.filter(request_id=filters["request_id"])
    return queryset


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
