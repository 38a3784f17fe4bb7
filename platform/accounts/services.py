"""Writes to accounts; each records its audit entry in the same transaction."""

from __future__ import annotations

from django.db import transaction

from compliance.events import EventType
from compliance.services import audit_record


@transaction.atomic
def user_disable(*, user, reason: str, acting_user=None) -> None:
    """Disable (never delete) an account; its sessions and websockets end (accounts.signals)."""
    if not user.is_active:
        return
    user.is_active = False
    user.save(update_fields=["is_active"])
    audit_record(event_type=EventType.USER_DISABLE, actor=acting_user, obj=user, details={"reason": reason})
