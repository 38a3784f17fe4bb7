"""The usage figures as CSV: one row per day, department and actor (person or API key).

Text cells that a spreadsheet would run as a formula are neutralised exactly as the audit
trail's CSV export does (``compliance.export``: a leading apostrophe, which
``compliance.export.csv_cell_value`` removes again); numbers and dates cannot start so.
"""

from __future__ import annotations

import csv
import io

from compliance.export import CSV_FORMULA_START, CSV_TEXT_ESCAPE
from inference.usage.selectors import UsageSummary

CSV_COLUMNS = (
    "date",
    "time_zone",
    "department",
    "actor_type",
    "actor",
    "requests",
    "failed",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
)
_ESCAPED_START = CSV_FORMULA_START | {CSV_TEXT_ESCAPE}


def csv_text_cell(value: str) -> str:
    """A text cell as ``compliance.export.csv_cells_neutralise`` writes it."""
    return CSV_TEXT_ESCAPE + value if value and value[0] in _ESCAPED_START else value


def usage_csv(summary: UsageSummary) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    zone = str(summary.period.zone)
    for row in summary.rows:
        figures = row.figures
        writer.writerow(
            [
                row.day.isoformat(),
                zone,
                csv_text_cell(row.department_slug),
                row.actor_type,
                csv_text_cell(row.actor_name),
                figures.requests,
                figures.failed,
                figures.prompt_tokens,
                figures.completion_tokens,
                figures.total_tokens,
            ]
        )
    return buffer.getvalue()
