"""The hash chain: ``hash = SHA-256(prev_hash || canonical(entry))``, per entry in its own format.

Every entry carries a ``format_version``; the registry below maps a version to its format: a tag
and the fields it hashes, in order. ``canonical`` is the format's tag (``audit-v2``), then a
header holding the byte length of each field's UTF-8 text (``-1`` for null) as 4-byte
big-endian signed integers, then the texts themselves, concatenated, in the format's field
order. Length-prefixed as a block, so no two different entries encode to the same bytes (no
separator games); the texts are fixed forms that a database round-trip gives back unchanged:
times in UTC with six fractional digits, addresses in their compressed form, JSON with sorted
keys and no insignificant white space (stored as that very text). The header layout lets the
verifier encode a row with three C calls instead of a Python step per field (docs/audit.md).

The tag names the version, so the version is covered by the hash: an entry whose version is
changed no longer matches. A later format is added with ``format_register(version, fields)``:
the Python sealer and verifier, the PostgreSQL sealer (compliance/triggers.py, generated from
this registry) and ``audit_verify`` pick each entry's format by its version, so older entries
still verify under their own. audit-v4 added the sealing clock (``sealed_at``).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

NULL_LENGTH = -1


class UnknownFormatVersion(ValueError):
    """An entry names a format version that is not registered."""

    def __init__(self, version: Any) -> None:
        super().__init__(f"audit format version {version!r} is not registered")
        self.version = version


@dataclass(frozen=True)
class CanonicalFormat:
    """One version of the canonical encoding: its tag, and the fields it hashes in order.

    ``timestamp_fields`` are hashed as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (the SQL sealer and the
    verifier print them so); every other field as its stored text.
    """

    version: int
    fields: tuple[str, ...]
    tag: bytes
    timestamp_fields: frozenset[str] = frozenset({"timestamp"})
    # ``pack_lengths(*lengths)``: the header, one C call (the verifier's hot path uses it).
    pack_lengths: Callable[..., bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pack_lengths", struct.Struct(f">{len(self.fields)}i").pack)

    def encode(self, fields: Sequence[bytes | None]) -> bytes:
        """The canonical bytes from the fields' UTF-8 texts (None for null), in ``self.fields`` order."""
        lengths = [NULL_LENGTH if value is None else len(value) for value in fields]
        return self.tag + self.pack_lengths(*lengths) + b"".join(value for value in fields if value is not None)

    def encode_texts(self, texts: Iterable[str | None]) -> bytes:
        return self.encode([None if text is None else text.encode("utf-8") for text in texts])

    def canonical(self, entry: Any) -> bytes:
        return self.encode_texts(field_text(name, getattr(entry, name)) for name in self.fields)


_FORMATS: dict[int, CanonicalFormat] = {}


def format_register(
    version: int,
    fields: Sequence[str],
    *,
    tag: bytes | None = None,
    timestamp_fields: Iterable[str] = ("timestamp",),
) -> CanonicalFormat:
    """Register format ``version`` (once: a registered format is part of every hash made with it).

    On PostgreSQL the sealer is generated from the registry when the triggers are installed: a
    migration that registers a new version re-installs them (compliance/triggers.py).
    """
    if version in _FORMATS:
        raise ValueError(f"audit format version {version} is already registered")
    if not 0 < version < 2**15:  # stored in a small integer column
        raise ValueError(f"audit format version {version} is out of range")
    if "sequence" not in fields or len(set(fields)) != len(fields):
        # The sequence inside the hash is what exposes a renumbered or reordered chain.
        raise ValueError("an audit format hashes the sequence number, and each field once")
    registered = CanonicalFormat(
        version=version,
        fields=tuple(fields),
        tag=tag if tag is not None else f"audit-v{version}".encode(),
        timestamp_fields=frozenset(timestamp_fields),
    )
    _FORMATS[version] = registered
    return registered


def format_unregister(version: int) -> None:
    """For tests that register a format of their own; production formats are never removed."""
    del _FORMATS[version]


def format_for(version: Any) -> CanonicalFormat:
    try:
        return _FORMATS[version]
    except (KeyError, TypeError):
        raise UnknownFormatVersion(version) from None


def formats() -> tuple[CanonicalFormat, ...]:
    """The registered formats, oldest first."""
    return tuple(_FORMATS[version] for version in sorted(_FORMATS))


def formats_fields() -> tuple[str, ...]:
    """Every field any registered format hashes, each once: audit-v2's first, in its order."""
    names: dict[str, None] = {}
    for registered in formats():
        names.update(dict.fromkeys(registered.fields))
    return tuple(names)


# The order is part of the format: changing it breaks verification of existing chains.
V2 = format_register(
    2,
    (
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
    ),
)
# The fields of audit-v2, for readers that list an entry's columns (exports, benchmarks).
CANONICAL_FIELDS = V2.fields
# Objects that carry no version of their own (rows of exports written before entries had one,
# the benchmarks' synthetic rows) are audit-v2: the only format there was.
UNVERSIONED = V2.version

# The database's clock when the entry was chained: set by the sealer, never by the writer (the
# pending table has no such column). audit_verify compares an entry's own time with the clock of
# the seal before it, which exposes entries back-dated into the pending table (docs/audit.md).
SEALING_CLOCK = "sealed_at"
# audit-v4: audit-v2's fields and the sealing clock. Version 3 stays unregistered: the test suite
# registers formats of its own under it.
V4 = format_register(4, (*V2.fields, SEALING_CLOCK), timestamp_fields=("timestamp", SEALING_CLOCK))
WRITE_VERSION = V4.version  # what audit_record writes now
# A pending entry in a format without the sealing clock (written by a process of the previous
# release during an upgrade, or inserted by hand with the column's default) is chained in the
# format that adds the clock to the same fields: every entry chained since audit-v4 carries it,
# so leaving the version out cannot dodge the check. Entries chained before keep their format.
SEALED_AS = {V2.version: V4.version}


def sealed_version(version: int) -> int:
    """The format a pending entry of ``version`` is chained in."""
    return SEALED_AS.get(version, version)


def clock_versions() -> tuple[int, ...]:
    """The registered versions whose entries carry the sealing clock (the only ones the database
    accepts into the chain since audit-v4)."""
    return tuple(registered.version for registered in formats() if SEALING_CLOCK in registered.fields)


# One encoder, built once: json.dumps() with options builds a new encoder on every call.
_canonical_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> str:
    return _canonical_encoder.encode(value)


def format_timestamp(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def field_text(name: str, value: Any) -> str | None:
    """The text form of one field as it enters the hash (None stays None)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return format_timestamp(value)
    if name == "details" or isinstance(value, dict | list):
        return canonical_json(value)
    if isinstance(value, bool):
        raise TypeError(f"audit field {name} cannot be a boolean")
    return str(value)


def canonical(entry: Any) -> bytes:
    """The bytes that are hashed for ``entry`` (a model instance or a row-like object), in the
    format its ``format_version`` names."""
    return format_for(getattr(entry, "format_version", UNVERSIONED)).canonical(entry)


def chain_hash(prev_hash: str, entry: Any) -> str:
    digest = hashlib.sha256()
    digest.update(bytes.fromhex(prev_hash))
    digest.update(canonical(entry))
    return digest.hexdigest()
