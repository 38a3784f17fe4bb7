"""The hash chain: ``hash = SHA-256(prev_hash || canonical(entry))``.

``canonical`` is a length-prefixed, typed encoding of the entry's fields in a fixed order, so
that no two different entries encode to the same bytes (no separator games) and the encoding is
the same after a database round-trip: times in UTC with microseconds, addresses in their
compressed form, JSON with sorted keys and no insignificant white space.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

# The order is part of the format: changing it breaks verification of existing chains.
CANONICAL_FIELDS = (
    "sequence",
    "timestamp",
    "actor_type",
    "actor_id",
    "actor_name",
    "department_id",
    "department_slug",
    "event_type",
    "outcome",
    "object_type",
    "object_id",
    "object_repr",
    "source_ip",
    "user_agent",
    "request_id",
    "details",
)
FORMAT_VERSION = b"audit-v1"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def format_timestamp(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _field_bytes(name: str, value: Any) -> bytes:
    if value is None:
        return b"N"
    if name == "timestamp":
        text = format_timestamp(value)
    elif name == "details":
        text = canonical_json(value)
    elif isinstance(value, bool):
        raise TypeError(f"audit field {name} cannot be a boolean")
    elif isinstance(value, int):
        text = str(value)
    else:
        text = str(value)
    data = text.encode("utf-8")
    return b"S" + len(data).to_bytes(4, "big") + data


def canonical(entry: Any) -> bytes:
    """The bytes that are hashed for ``entry`` (a model instance or a row-like object)."""
    parts = [FORMAT_VERSION]
    for name in CANONICAL_FIELDS:
        parts.append(_field_bytes(name, getattr(entry, name)))
    return b"".join(parts)


def chain_hash(prev_hash: str, entry: Any) -> str:
    digest = hashlib.sha256()
    digest.update(bytes.fromhex(prev_hash))
    digest.update(canonical(entry))
    return digest.hexdigest()
