"""The hash chain: ``hash = SHA-256(prev_hash || canonical(entry))``.

``canonical`` is a length-prefixed, typed encoding of the entry's fields in a fixed order, so
that no two different entries encode to the same bytes (no separator games) and the encoding is
the same after a database round-trip: times in UTC with microseconds, addresses in their
compressed form, JSON with sorted keys and no insignificant white space.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable
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


# One encoder, built once: json.dumps() with options builds a new encoder on every call.
_canonical_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> str:
    return _canonical_encoder.encode(value)


def format_timestamp(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_pack_length = struct.Struct(">I").pack


def field_text(name: str, value: Any) -> str | None:
    """The text form of one field as it enters the hash (None stays None)."""
    if value is None:
        return None
    if name == "timestamp":
        return format_timestamp(value)
    if name == "details":
        return canonical_json(value)
    if isinstance(value, bool):
        raise TypeError(f"audit field {name} cannot be a boolean")
    return str(value)


def canonical_from_texts(texts: Iterable[str | None]) -> bytes:
    """The canonical bytes from the fields' text forms, in CANONICAL_FIELDS order.

    Each field is ``N`` (null) or ``S`` + 4-byte big-endian byte length + UTF-8 bytes. The
    verifier calls this directly on rows it formats itself, so it is kept lean.
    """
    parts = [FORMAT_VERSION]
    append = parts.append
    for text in texts:
        if text is None:
            append(b"N")
        else:
            data = text.encode("utf-8")
            append(b"S" + _pack_length(len(data)) + data)
    return b"".join(parts)


def canonical(entry: Any) -> bytes:
    """The bytes that are hashed for ``entry`` (a model instance or a row-like object)."""
    return canonical_from_texts(field_text(name, getattr(entry, name)) for name in CANONICAL_FIELDS)


def chain_hash(prev_hash: str, entry: Any) -> str:
    digest = hashlib.sha256()
    digest.update(bytes.fromhex(prev_hash))
    digest.update(canonical(entry))
    return digest.hexdigest()
