"""CSV exports neutralise cells a spreadsheet would run as a formula (AU-3, IP-2), reversibly.

Text that people and clients choose (a user name, an object's description, a user agent, a
request id) reaches the audit trail verbatim and, through an export, the auditor's spreadsheet.
A text cell starting with = + - @ tab, CR or NUL gets a leading apostrophe, as does one that
starts with an apostrophe already; removing one leading apostrophe (``csv_cell_value``) gives
back exactly what was stored, so an exported file still re-verifies offline. Both CSV exports
are covered: ``audit_export`` (command and console) and the REST export. JSON lines are not
escaped at all.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from compliance.chain import CANONICAL_FIELDS, canonical_json, chain_hash
from compliance.context import RequestContext, request_context
from compliance.events import EventType
from compliance.export import (
    CSV_COLUMNS,
    CSV_FORMULA_START,
    CSV_TEXT_ESCAPE,
    audit_export,
    csv_cell_value,
    csv_cells_neutralise,
)
from compliance.models import GENESIS_HASH, AuditEntry
from compliance.services import audit_record

pytestmark = pytest.mark.django_db

HYPERLINK = '=HYPERLINK("http://x")'
SUM = "@SUM(A1)"
HOSTILE_REPRS = [
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "\tinvisible tab, then =1+1",
    "\rcarriage return",
    "'already quoted",
    "''twice",
    "=",
    "a=b (not at the start)",
    "plain",
    "",
]
HOSTILE_USER_AGENT = "=cmd|' /C notepad'!A0"
HOSTILE_REQUEST_ID = "-hostile-request-id"
# The text columns of an entry: what a hostile value could be written into.
TEXT_COLUMNS = tuple(
    name for name in CANONICAL_FIELDS if name not in ("sequence", "timestamp", "department_id", "details")
)


@pytest.fixture
def hostile(personas, make_user):
    """Entries whose free text a spreadsheet would run: a user named like a formula, object
    descriptions, a client's user agent and request id."""
    linker, summer = make_user(HYPERLINK), make_user(SUM)
    context = RequestContext(request_id=HOSTILE_REQUEST_ID, source_ip="192.0.2.7", user_agent=HOSTILE_USER_AGENT)
    with request_context(context):
        audit_record(event_type=EventType.LOGIN, actor=linker, details={"note": "=1+1 inside JSON"})
        audit_record(event_type=EventType.LOGIN, actor=summer)
        for text in HOSTILE_REPRS:
            audit_record(
                event_type=EventType.ASSET_VIEW,
                actor=summer,
                department=personas.department_a,
                object_type="assets.asset",
                object_id="@1",
                object_repr=text,
            )
    return personas


def stored_rows() -> dict[int, dict]:
    return {row["sequence"]: row for row in AuditEntry.objects.order_by("sequence").values(*CSV_COLUMNS)}


def parse_csv(text: str) -> list[dict[str, str]]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    return [dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows[1:]]


def entry_from_csv(row: dict[str, str]) -> SimpleNamespace:
    """An entry as an offline verifier reads it back: one leading apostrophe removed from every
    cell (the manifest's rule), empty cells of nullable columns as null, numbers and details parsed."""
    values = {name: csv_cell_value(cell) for name, cell in row.items()}
    for name in ("department_id", "source_ip", "sealed_at"):
        values[name] = values[name] or None
    values["sequence"] = int(values["sequence"])
    values["format_version"] = int(values["format_version"])
    values["department_id"] = None if values["department_id"] is None else int(values["department_id"])
    values["details"] = json.loads(values["details"])
    return SimpleNamespace(**values)


def check_neutralised(rows: list[dict[str, str]]) -> None:
    """No text cell opens with a formula character; each reads back as exactly what was stored."""
    stored = stored_rows()
    seen = set()
    for row in rows:
        entry = stored[int(row["sequence"])]
        for name in TEXT_COLUMNS:
            cell, value = row[name], entry[name] if entry[name] is not None else ""
            assert not cell or cell[0] not in CSV_FORMULA_START, (name, cell)
            assert csv_cell_value(cell) == value, (name, cell, value)
            if value and (value[0] in CSV_FORMULA_START or value[0] == CSV_TEXT_ESCAPE):
                assert cell == CSV_TEXT_ESCAPE + value
                seen.add(value)
            else:
                assert cell == value  # nothing else is touched
        # Canonical JSON opens with "{": the details cell is the stored text, unescaped.
        assert row["details"] == canonical_json(entry["details"])
    assert {HYPERLINK, SUM, HOSTILE_USER_AGENT, HOSTILE_REQUEST_ID, "@1"} <= seen
    assert {text for text in HOSTILE_REPRS if text[:1] in CSV_FORMULA_START | {CSV_TEXT_ESCAPE}} <= seen


def reverify_offline(rows: list[dict[str, str]], first_prev_hash: str) -> None:
    prev_hash = first_prev_hash
    for row in rows:
        entry = entry_from_csv(row)
        assert entry.prev_hash == prev_hash
        assert chain_hash(prev_hash, entry) == entry.hash, entry.sequence
        prev_hash = entry.hash


def test_the_file_export_neutralises_formula_cells_and_still_reverifies_offline(hostile, tmp_path):
    result = audit_export(output=tmp_path / "trail.csv", format="csv")
    data = (tmp_path / "trail.csv").read_bytes()
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
    assert "remove one leading '" in manifest["csv_text_escape"]
    rows = parse_csv(data.decode("utf-8"))
    assert len(rows) == manifest["entries"] == result.entries
    check_neutralised(rows)
    hyperlink = next(row for row in rows if row["actor_name"].endswith(HYPERLINK))
    assert hyperlink["actor_name"] == "'" + HYPERLINK and hyperlink["user_agent"] == "'" + HOSTILE_USER_AGENT
    assert next(row for row in rows if row["object_repr"].endswith("twice"))["object_repr"] == "'''twice"
    reverify_offline(rows, manifest["first_prev_hash"])


def test_the_command_writes_the_same_neutralised_csv(hostile, tmp_path):
    call_command("audit_export", "--format", "csv", "--output", str(tmp_path / "cmd.csv"))
    rows = parse_csv((tmp_path / "cmd.csv").read_bytes().decode("utf-8"))  # CR in a cell stays a CR
    check_neutralised(rows)
    reverify_offline(rows, GENESIS_HASH)


def test_the_jsonl_export_is_not_escaped(hostile, tmp_path):
    audit_export(output=tmp_path / "trail.jsonl", format="jsonl")
    lines = [json.loads(line) for line in (tmp_path / "trail.jsonl").read_text(encoding="utf-8").splitlines()]
    stored = stored_rows()
    for line in lines:
        entry = stored[line["sequence"]]
        assert {name: line[name] for name in TEXT_COLUMNS} == {name: entry[name] for name in TEXT_COLUMNS}
    assert HYPERLINK in {line["actor_name"] for line in lines}
    assert "'already quoted" in {line["object_repr"] for line in lines}


def test_the_rest_export_neutralises_formula_cells_and_still_reverifies_offline(hostile, make_user):
    from departments.api_keys.services import api_key_create

    auditor = make_user("auditor", admin_role="audit")
    raw = api_key_create(department=None, name="SIEM", scopes=["audit:read"], created_by=auditor).raw_key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    # The export's own entry (written before the stream starts, so exported too) carries the
    # client's user agent, a formula.
    response = client.get("/api/v1/audit/export", {"format": "csv"}, HTTP_USER_AGENT="@cmd|' /C calc'!A0")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = parse_csv(b"".join(response).decode("utf-8"))
    assert [int(row["sequence"]) for row in rows] == sorted(stored_rows())
    check_neutralised(rows)
    own = rows[-1]
    assert own["event_type"] == EventType.AUDIT_EXPORT and own["user_agent"] == "'@cmd|' /C calc'!A0"
    reverify_offline(rows, GENESIS_HASH)

    jsonl = client.get("/api/v1/audit/export", {"format": "jsonl"})
    lines = [json.loads(line) for line in b"".join(jsonl).splitlines()]
    assert {line["actor_name"] for line in lines} >= {HYPERLINK, SUM}
    assert "@cmd|' /C calc'!A0" in {line["user_agent"] for line in lines}


@pytest.mark.parametrize("value", ["=1", "+1", "-1", "@1", "\t1", "\r1", "\x001", "'", "''", "'=1", "", "x", "1"])
def test_escaping_is_undone_by_removing_one_apostrophe(value):
    row = [""] * len(CSV_COLUMNS)
    column = CSV_COLUMNS.index("object_repr")
    row[column] = value
    cell = csv_cells_neutralise(row)[column]
    assert csv_cell_value(cell) == value
    assert not cell or cell[0] not in CSV_FORMULA_START
    assert cell == (value if value[:1] not in {*CSV_FORMULA_START, CSV_TEXT_ESCAPE} else CSV_TEXT_ESCAPE + value)
