"""schemathesis against the served schema (bounded): no 500s, and responses match the schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _run(live_api, key: str, report: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{live_api.base_url}/api/schema/",
            "--url",
            live_api.base_url,
            "-H",
            f"Authorization: Bearer {key}",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "15",
            "--seed",
            "20260101",
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "60",
            "--no-color",
            "--report",
            "junit",
            "--report-junit-path",
            str(report),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=report.parent,  # schemathesis keeps state in ./.schemathesis
    )


def test_department_endpoints_hold_their_schema(live_api, tmp_path):
    result = _run(
        live_api, live_api.keys["finance"], tmp_path / "department.xml", "--exclude-path-regex", "^/api/v1/audit"
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:] + live_api.log()[-3000:]
    report = (tmp_path / "department.xml").read_text(encoding="utf-8")
    assert "POST /v1/chat/completions" in report and "POST /api/v1/assets" in report
    assert "GET /api/v1/batches/{batch_id}/results" in report


def test_audit_endpoints_hold_their_schema(live_api, tmp_path):
    result = _run(live_api, live_api.keys["audit"], tmp_path / "audit.xml", "--include-path-regex", "^/api/v1/audit")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:] + live_api.log()[-3000:]
    assert "GET /api/v1/audit/export" in (tmp_path / "audit.xml").read_text(encoding="utf-8")
