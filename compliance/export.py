"""``audit_export``: the trail (or a filtered part of it) to a JSON-lines or CSV file.

Streamed: rows come from a server-side cursor (``iterator(chunk_size=...)``) and go straight
to the file while its SHA-256 is computed, so memory stays flat for millions of entries. Next
to the file a manifest (``<file>.manifest.json``) holds the digest, the covered sequence range,
whether the range is complete (every sequence present: such an archive allows the retention
purge), the ``prev_hash`` the first entry continues from (to re-verify the file offline), and a
checkpoint signed at export time with the public key to check it.

Every line carries the entry's ``format_version`` and every field a registered format hashes, so
a file re-verifies offline, entry by entry in its own format (docs/audit.md). CSV cells that a
spreadsheet would run as a formula are neutralised (``csv_cells_neutralise``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from compliance.chain import SEALING_CLOCK, canonical_json, format_timestamp, formats_fields
from compliance.checkpoints import Checkpoint, checkpoint_sign, key_id, public_key_pem
from compliance.events import EventType
from compliance.models import AuditArchive, AuditEntry
from compliance.sealing import seal_pending
from compliance.services import audit_record

FORMATS = ("jsonl", "csv")
# Every field a registered format hashes (audit-v2's first, then the sealing clock), the entry's
# format version, its links. Entries chained before audit-v4 have an empty sealing clock.
CSV_COLUMNS = (*formats_fields(), "format_version", "prev_hash", "hash")
CHUNK_SIZE = 5000
UNKNOWN_FORMAT = "Unknown export format (use jsonl or csv)."
_TIMESTAMP_COLUMNS = tuple(CSV_COLUMNS.index(name) for name in ("timestamp", SEALING_CLOCK))
_DETAILS_COLUMN = CSV_COLUMNS.index("details")
# CSV injection (OWASP; ASVS 5.0 V1.2.10 adds NUL): a spreadsheet runs a cell that starts with
# = + - @ tab, CR or NUL as a formula. Such a text cell gets a leading apostrophe, which
# spreadsheets show as text; so does a cell that already starts with one, so that removing one
# leading apostrophe from every cell that has one gives back exactly what was stored (the file
# re-verifies). The csv module quotes separators, quotes and line breaks, so no text can open a
# cell of its own.
CSV_FORMULA_START = frozenset("=+-@\t\r\0")
CSV_TEXT_ESCAPE = "'"
_CSV_ESCAPED_START = CSV_FORMULA_START | {CSV_TEXT_ESCAPE}
# The columns that hold text from outside (numbers, times, hashes and canonical JSON cannot start so).
_CSV_TEXT_COLUMNS = tuple(
    index
    for index, name in enumerate(CSV_COLUMNS)
    if name
    not in {"sequence", "timestamp", SEALING_CLOCK, "department_id", "details", "format_version", "prev_hash", "hash"}
)


class ExportError(ValueError):
    pass


@dataclass
class ExportResult:
    path: Path
    manifest_path: Path
    sha256: str
    entries: int
    first_sequence: int | None
    last_sequence: int | None
    complete: bool
    checkpoint: Checkpoint | None
    archive: AuditArchive


class _HashingWriter(io.RawIOBase):
    """A binary sink that hashes what it writes; a text wrapper with a large buffer sits on top."""

    def __init__(self, raw) -> None:
        self.raw, self.digest = raw, hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.digest.update(data)
        return self.raw.write(data)


def export_queryset(*, since: datetime | None = None, until: datetime | None = None, department: Any = None):
    queryset = AuditEntry.objects.order_by("sequence")
    if since is not None:
        queryset = queryset.filter(timestamp__gte=since)
    if until is not None:
        queryset = queryset.filter(timestamp__lt=until)
    if department is not None:
        queryset = queryset.filter(department_id=getattr(department, "pk", department))
    return queryset


def _rows(queryset):
    # values_list + iterator: a server-side cursor on PostgreSQL and no model instances.
    return queryset.values_list(*CSV_COLUMNS).iterator(chunk_size=CHUNK_SIZE)


def export_values(values: tuple) -> list:
    """An entry's columns (CSV_COLUMNS) as exported: times in their canonical text."""
    row = list(values)
    for index in _TIMESTAMP_COLUMNS:
        if row[index] is not None:
            row[index] = format_timestamp(row[index])
    return row


def csv_cells_neutralise(row: list) -> list:
    """``row`` (exported values, details as canonical JSON text) with every text cell that a
    spreadsheet would run as a formula, or that starts with the escape itself, escaped."""
    for index in _CSV_TEXT_COLUMNS:
        value = row[index]
        if value and value[0] in _CSV_ESCAPED_START:
            row[index] = CSV_TEXT_ESCAPE + value
    return row


def csv_cell_value(cell: str) -> str:
    """What was stored, from an exported CSV text cell (undoes ``csv_cells_neutralise``)."""
    return cell[1:] if cell.startswith(CSV_TEXT_ESCAPE) else cell


def audit_export(
    *,
    output: Path,
    format: str = "jsonl",
    since: datetime | None = None,
    until: datetime | None = None,
    department: Any = None,
    acting_user: Any = None,
) -> ExportResult:
    """Write the export and its manifest, sign a checkpoint, record the archive and audit it.

    Run outside a transaction (the command, a console request): the checkpoint must only sign
    committed entries.
    """
    if format not in FORMATS:
        raise ExportError(UNKNOWN_FORMAT)
    seal_pending()  # entries committed a moment ago belong in the export: chain them first
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".part")
    count, first, last, last_hash, first_prev = 0, None, None, "", None
    sequence_index = CSV_COLUMNS.index("sequence")
    with partial.open("wb") as raw:
        sink = _HashingWriter(raw)
        text = io.TextIOWrapper(io.BufferedWriter(sink, buffer_size=1 << 20), encoding="utf-8", newline="")
        writer = csv.writer(text) if format == "csv" else None
        if writer is not None:
            writer.writerow(CSV_COLUMNS)
        dumps = json.dumps
        for values in _rows(export_queryset(since=since, until=until, department=department)):
            row = export_values(values)
            if writer is not None:
                row[_DETAILS_COLUMN] = canonical_json(row[_DETAILS_COLUMN])
                writer.writerow(csv_cells_neutralise(row))
            else:
                text.write(dumps(dict(zip(CSV_COLUMNS, row, strict=True)), ensure_ascii=False))
                text.write("\n")
            if first is None:
                first, first_prev = row[sequence_index], row[-2]
            count += 1
            last, last_hash = row[sequence_index], row[-1]
        text.flush()
        text.detach()
        raw.flush()
        os.fsync(raw.fileno())
    digest = sink.digest.hexdigest()
    os.replace(partial, output)
    complete = department is None and count > 0 and last - first + 1 == count
    checkpoint = checkpoint_sign(sequence=last, hash=last_hash) if count else None
    filters = {
        "since": format_timestamp(since) if since else None,
        "until": format_timestamp(until) if until else None,
        "department": getattr(department, "slug", department),
    }
    with transaction.atomic():
        archive = AuditArchive.objects.create(
            actor_name=getattr(acting_user, "username", "") or "system",
            format=format,
            file_name=str(output)[:255],
            sha256=digest,
            entry_count=count,
            first_sequence=first,
            last_sequence=last,
            last_hash=last_hash,
            complete=complete,
            filters=filters,
        )
        audit_record(
            event_type=EventType.AUDIT_EXPORT,
            actor=acting_user or "system",
            obj=archive,
            details={
                "format": format,
                "entries": count,
                "first_sequence": first,
                "last_sequence": last,
                "sha256": digest,
                "complete": complete,
                "filters": filters,
            },
        )
    manifest_path = output.with_name(output.name + ".manifest.json")
    manifest = {
        "file": output.name,
        "format": format,
        "sha256": digest,
        "entries": count,
        "first_sequence": first,
        "last_sequence": last,
        "first_prev_hash": first_prev,
        "last_hash": last_hash,
        "complete": complete,
        "filters": filters,
        "archive_id": archive.pk,
        "created_at": format_timestamp(timezone.now()),
        "checkpoint": checkpoint.as_json() if checkpoint else None,
        "signing_key_id": key_id(),
        "signing_public_key": public_key_pem(),
        "canonical_format": (
            "hash = SHA-256(prev_hash || canonical(entry)), canonical in the format its format_version names "
            "(docs/audit.md); entries without a format_version are audit-v2"
        ),
        "csv_text_escape": (
            "CSV only: a text cell starting with = + - @ tab, CR, NUL or ' has a ' prepended (spreadsheet formula "
            "injection); remove one leading ' to get the stored text"
        ),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return ExportResult(output, manifest_path, digest, count, first, last, complete, checkpoint, archive)
