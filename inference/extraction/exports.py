"""A batch's results as files to download from the portal: JSON lines, CSV and XLSX.

Every export carries both what the model extracted and the reviewers' corrections: JSON lines
as ``result`` (untouched) and ``corrections`` (field → latest correction); CSV and XLSX as one
row per file with, for each field, the extracted value and a ``<field>.corrected`` column beside
it. Text cells that a spreadsheet would run as a formula (= + - @ tab, CR, NUL), or that start
with the escape itself, get the audit export's leading apostrophe (``compliance.export``), in
CSV and XLSX alike — so what a model read off a document can never become a formula.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from compliance.export import CSV_FORMULA_START, CSV_TEXT_ESCAPE
from departments.tenancy import department_scope
from inference.extraction.models import BatchJob, Extraction
from inference.extraction.services import extraction_corrections_latest, extraction_field_paths

FORMATS = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
CORRECTED_SUFFIX = ".corrected"
BASE_COLUMNS = ("id", "file", "file_id", "file_sha256", "template", "status", "flags", "problems", "created_at")
_ESCAPED_START = CSV_FORMULA_START | {CSV_TEXT_ESCAPE}


def cell_neutralise(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, escaped as the audit CSV export does."""
    if isinstance(value, str) and value and value[0] in _ESCAPED_START:
        return CSV_TEXT_ESCAPE + value
    return value


def _cell(value: Any) -> Any:
    """A value as one cell: numbers stay numbers, anything nested becomes JSON text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _extractions(job: BatchJob) -> list[Extraction]:
    with department_scope(job.department_id):
        rows = list(Extraction.objects.filter(batch=job).select_related("template", "asset").order_by("created_at"))
    order = {asset_id: index for index, asset_id in enumerate(job.asset_ids)}
    return sorted(rows, key=lambda row: order.get(row.asset_ref, len(order)))


def _file_name(extraction: Extraction) -> str:
    return extraction.asset.original_name if extraction.asset is not None else ""


def batch_export_records(job: BatchJob) -> list[dict]:
    """One record per file of the batch, in the order the files were given."""
    records = []
    for extraction in _extractions(job):
        corrections = extraction_corrections_latest(extraction)
        records.append(
            {
                "id": str(extraction.pk),
                "file": _file_name(extraction),
                "file_id": extraction.asset_ref,
                "file_sha256": extraction.asset_sha256,
                "template": extraction.template_slug,
                "status": extraction.status,
                "flags": extraction.flags,
                "problems": extraction.problems,
                "created_at": extraction.created_at.isoformat(),
                "fields": extraction_field_paths(extraction),
                "result": extraction.result,
                "rule_outcomes": extraction.rule_outcomes,
                "pages": (extraction.usage or {}).get("pages", []),
                "grounding": (extraction.usage or {}).get("grounding", {}),
                "corrections": {
                    path: {
                        "value": correction.value,
                        "note": correction.note,
                        "by": correction.corrected_by_name,
                        "at": correction.created_at.isoformat(),
                    }
                    for path, correction in corrections.items()
                },
            }
        )
    return records


def export_jsonl(records: Iterable[dict]) -> Iterator[bytes]:
    for record in records:
        line = {key: value for key, value in record.items() if key != "fields"}
        yield json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n"


def export_table(records: list[dict]) -> list[list[Any]]:
    """Header and rows for CSV and XLSX: the fixed columns, then each field and its correction."""
    fields: list[str] = []
    for record in records:
        fields += [path for path in record["fields"] if path not in fields]
    header = [*BASE_COLUMNS]
    for path in fields:
        header += [path, path + CORRECTED_SUFFIX]
    rows = [header]
    for record in records:
        result = record["result"] if isinstance(record["result"], dict) else {}
        row = [
            record["id"],
            record["file"],
            record["file_id"],
            record["file_sha256"],
            record["template"],
            record["status"],
            " ".join(record["flags"] or []),
            "; ".join(str(problem) for problem in record["problems"] or []),
            record["created_at"],
        ]
        for path in fields:
            correction = record["corrections"].get(path)
            row += [_cell(result.get(path)), _cell(correction["value"]) if correction else None]
        rows.append(row)
    return [[cell_neutralise(cell) for cell in row] for row in rows]


def export_csv(records: list[dict]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in export_table(records):
        writer.writerow(["" if cell is None else cell for cell in row])
    # A byte-order mark, so that spreadsheets open the Chinese text as UTF-8.
    return "\ufeff".encode() + buffer.getvalue().encode("utf-8")


def export_xlsx(records: list[dict]) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "results"
    for row in export_table(records):
        sheet.append(row)
        for cell in sheet[sheet.max_row]:
            if isinstance(cell.value, str):
                cell.data_type = "s"  # text, never a formula, whatever it starts with
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
