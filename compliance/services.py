"""The one way to write the audit trail: ``audit_record``.

Call it inside the transaction of the action it records: the action and its entry commit
together or not at all, and if the audit write fails the action fails with it (AU-4).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import models
from django.utils import timezone

from compliance.chain import canonical_json
from compliance.context import current_request_context, normalise_ip
from compliance.events import ActorType, EventType, Outcome
from compliance.models import AuditEntry, AuditPending
from compliance.preview_crypto import PreviewSealError, entry_seal
from compliance.sealing import append

logger = logging.getLogger(__name__)

SYSTEM_ACTOR = "system"
_MAX_REPR = 255
_MAX_USER_AGENT = 512
# Built once: ``TextChoices.values`` builds a new list on every access (tens of µs per entry).
_EVENT_TYPES = frozenset(EventType.values)
_OUTCOMES = frozenset(Outcome.values)


class AuditWriteError(RuntimeError):
    """The entry could not be written; the surrounding action must not go ahead."""


def _actor_fields(actor: Any, context) -> tuple[str, str, str]:
    """(actor_type, actor_id, actor_name) for an explicit actor or the request's identity."""
    if actor is None and context is not None:
        actor = context.api_key or context.user
    if actor is None or actor == SYSTEM_ACTOR:
        if context is not None and actor is None:
            return ActorType.ANONYMOUS, "", ""
        return ActorType.SYSTEM, "", SYSTEM_ACTOR
    if getattr(actor, "is_authenticated", None) is False:  # AnonymousUser
        return ActorType.ANONYMOUS, "", ""
    if hasattr(actor, "get_username"):
        return ActorType.USER, str(actor.pk), actor.get_username()
    # Anything else that authenticates (an API key) names itself through these attributes.
    return ActorType.API_KEY, str(actor.pk), str(getattr(actor, "audit_name", actor))


def _details(details: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    """(the details, their canonical text): what is stored, and hashed, is that text."""
    if not details:
        return {}, "{}"
    if not isinstance(details, dict):
        raise AuditWriteError("audit details must be a JSON object")
    try:
        return details, canonical_json(details)
    except (TypeError, ValueError) as exc:
        raise AuditWriteError(f"audit details are not canonical JSON: {exc}") from exc


def audit_record(
    *,
    event_type: EventType | str,
    outcome: Outcome | str = Outcome.SUCCESS,
    actor: Any = None,
    department: Any = None,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    details: dict[str, Any] | None = None,
    wait_for_chain: bool = False,
) -> AuditEntry | AuditPending:
    """Write one entry in the current transaction and return it.

    The entry is chained at once if no other transaction holds the chain head (then an
    ``AuditEntry`` with its sequence number is returned), otherwise right after the commit by
    the sealer (an ``AuditPending`` is returned; see compliance/sealing.py). ``wait_for_chain``
    queues for the head instead, so the returned entry is always chained (checkpoints sign it).
    Its ``details`` are the dict passed in; the database holds their canonical JSON text.

    ``actor`` is a user, an API key, the string ``"system"``, or None for whoever the current
    request context names. ``department`` is a Department, its id, or None for platform events.
    """
    if event_type not in _EVENT_TYPES:
        raise AuditWriteError(f"unknown audit event type {event_type!r}")
    if outcome not in _OUTCOMES:
        raise AuditWriteError(f"unknown audit outcome {outcome!r}")
    context = current_request_context()
    actor_type, actor_id, actor_name = _actor_fields(actor, context)
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)
    department_id, department_slug = None, ""
    if department is not None:
        if isinstance(department, int):
            department_id = department
        else:
            department_id, department_slug = department.pk, department.slug

    if context is not None and context.client_request_id and (details is None or isinstance(details, dict)):
        # Kept apart from the entry's own request id, and named as what the client said it was.
        details = {**(details or {}), "client_request_id": context.client_request_id}
    if details is not None and not isinstance(details, dict):
        raise AuditWriteError("audit details must be a JSON object")
    timestamp = timezone.now()
    # Previews are business text: sealed under their object's key before the entry is hashed,
    # so the chain covers the ciphertext (compliance/preview_crypto.py).
    try:
        object_repr, details = entry_seal(
            obj=obj,
            object_type=object_type,
            object_id=str(object_id),
            object_repr=object_repr,
            department_id=department_id,
            timestamp=timestamp,
            details=details,
        )
    except PreviewSealError as exc:
        raise AuditWriteError(str(exc)) from exc
    details, details_text = _details(details)
    values = {
        "timestamp": timestamp,
        "actor_type": actor_type,
        "actor_id": actor_id,
        "actor_name": actor_name[:150],
        "department_id": department_id,
        "department_slug": department_slug,
        "event_type": str(event_type),
        "outcome": str(outcome),
        "object_type": object_type[:64],
        "object_id": str(object_id)[:64],
        "object_repr": object_repr[:_MAX_REPR],
        "source_ip": normalise_ip(context.source_ip) if context else None,
        "user_agent": (context.user_agent if context else "")[:_MAX_USER_AGENT],
        "request_id": context.request_id if context else "",
        "details": details,
    }
    # No savepoint: if the write fails, the whole transaction is aborted and the action cannot
    # commit without its entry (AU-4), even if the caller catches the error.
    return append(values, details_text, wait=wait_for_chain)
