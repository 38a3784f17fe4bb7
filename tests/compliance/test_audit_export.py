"""audit_export: streamed file, manifest with digest, range and a signed checkpoint; audited."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.utils import timezone

from compliance.chain import chain_hash
from compliance.checkpoints import checkpoints_read
from compliance.events import EventType
from compliance.export import audit_export
from compliance.models import AuditArchive, AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def trail(system_context, personas):
    from compliance.services import audit_record

    audit_record(event_type=EventType.LOGIN_FAILED, outcome="failure", details={"username": "谁"})
    audit_record(event_type=EventType.ASSET_VIEW, department=personas.department_b, details={"n": 2})
    return personas


def test_jsonl_export_reverifies_offline_and_its_manifest_holds_digest_range_and_checkpoint(trail, tmp_path):
    entries = list(AuditEntry.objects.order_by("sequence"))
    result = audit_export(output=tmp_path / "trail.jsonl", format="jsonl")
    data = (tmp_path / "trail.jsonl").read_bytes()
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest() == result.sha256
    assert (manifest["first_sequence"], manifest["last_sequence"]) == (1, entries[-1].sequence)
    assert manifest["entries"] == len(entries) and manifest["complete"] is True
    # The file is the chain: it re-verifies without the database.
    prev_hash = manifest["first_prev_hash"]
    for line in data.decode().splitlines():
        row = json.loads(line)
        row["timestamp"] = datetime.fromisoformat(row["timestamp"])
        assert row["prev_hash"] == prev_hash
        assert chain_hash(prev_hash, SimpleNamespace(**row)) == row["hash"]
        prev_hash = row["hash"]
    # The manifest's checkpoint is in the log, validly signed, at the last exported entry.
    signed = [c for c in checkpoints_read() if c.valid]
    assert manifest["checkpoint"] == signed[-1].as_json()
    assert (signed[-1].sequence, signed[-1].hash) == (entries[-1].sequence, entries[-1].hash)
    assert "BEGIN PUBLIC KEY" in manifest["signing_public_key"]
    # Recorded and audited.
    archive = AuditArchive.objects.get()
    assert (archive.sha256, archive.complete, archive.last_sequence) == (result.sha256, True, entries[-1].sequence)
    exported = AuditEntry.objects.filter(event_type=EventType.AUDIT_EXPORT).get()
    assert exported.details["sha256"] == result.sha256 and exported.object_id == str(archive.pk)


def test_csv_export_of_one_department_is_not_a_complete_archive(trail, tmp_path):
    result = audit_export(output=tmp_path / "b.csv", format="csv", department=trail.department_b)
    with (tmp_path / "b.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {row["department_slug"] for row in rows} == {"quality"}
    assert json.loads(rows[-1]["details"]) == {"n": 2}
    assert result.complete is False and result.entries == len(rows)


def test_time_window(trail, tmp_path):
    now = timezone.now()
    assert audit_export(output=tmp_path / "future.jsonl", since=now + timedelta(hours=1)).entries == 0
    everything = AuditEntry.objects.count()
    assert audit_export(output=tmp_path / "all.jsonl", until=now + timedelta(hours=1)).entries == everything


def test_command(trail, tmp_path, capsys):
    call_command("audit_export", "--format", "csv", "--output", str(tmp_path / "x.csv"), "--department", "finance")
    out = capsys.readouterr().out
    assert "exported" in out and "manifest" in out
    assert (tmp_path / "x.csv.manifest.json").exists()
