"""The compliance self-check: every control reported, in four states, in Chinese and English, audited.

The honesty of each line is tested in test_report_honesty.py (no constant pass) and the live
probes in test_report_live.py and test_report_tls.py.
"""

import json
import re
from pathlib import Path

import pytest
from django.core.management import call_command

from accounts.roles import AdminRole
from compliance.events import EventType
from compliance.models import AuditEntry
from compliance.report import FAIL, MANUAL, NOT_APPLICABLE, PASS, STATES, compliance_report_build

pytestmark = pytest.mark.django_db
MLPS = Path(__file__).resolve().parents[3] / "shared" / "MLPS3.md"
ALL_CONTROLS = [
    "IA-1",
    "IA-2",
    "IA-3",
    "IA-4",
    "AC-1",
    "AC-2",
    "AC-3",
    "AC-4",
    "AC-5",
    "AC-6",
    "AC-7",
    "AU-1",
    "AU-2",
    "AU-3",
    "AU-4",
    "AU-5",
    "IP-1",
    "IP-2",
    "IP-3",
    "DI-1",
    "DC-1",
    "DC-2",
    "BR-1",
    "BR-2",
    "BR-3",
    "RI-1",
    "RI-2",
    "PI-1",
    "PI-2",
    "SM-1",
    "SM-2",
    "SM-3",
]


def by_id(report):
    return {result.control: result for result in report.results}


def test_every_control_of_the_standard_is_reported(personas):
    if MLPS.exists():  # the checkout's sibling shared/ folder names the controls
        assert sorted(set(re.findall(r"\*\*([A-Z]{2}-\d)\*\*", MLPS.read_text()))) == sorted(ALL_CONTROLS)
    report = compliance_report_build()
    assert [r.control for r in report.results] == ALL_CONTROLS
    for result in report.results:
        assert result.status in STATES
        assert result.evidence, result.control
        states = {line.state for line in result.evidence}
        # the control's state follows from its lines: any fail fails, then manual, then pass
        expected = next((s for s in (FAIL, MANUAL, PASS) if s in states), NOT_APPLICABLE)
        assert result.status == expected, (result.control, result.evidence)
        assert not any("could not run" in line for line in result.evidence), (result.control, result.evidence)


def test_evidence_follows_the_data(personas, make_user):
    results = by_id(compliance_report_build())
    assert results["SM-1"].status == FAIL  # nobody holds the system administrator role yet
    assert results["AC-4"].status == PASS
    make_user("sysadmin", admin_role=AdminRole.SYSTEM)
    make_user("root", is_superuser=True)
    results = by_id(compliance_report_build())
    assert results["SM-1"].status == PASS
    assert "sysadmin" in results["SM-1"].evidence[0]
    assert results["AC-4"].status == FAIL  # an active superuser breaks least privilege
    assert results["AC-2"].status == FAIL  # "root" is a default account name
    assert results["IA-4"].status == FAIL  # the system administrator has no TOTP device
    assert "sysadmin" in results["IA-4"].evidence[0]


def test_audit_chain_is_verified_live(personas):
    result = by_id(compliance_report_build())["AU-3"]
    head = AuditEntry.objects.order_by("-sequence").first().sequence
    assert any(f"..{head}" in line for line in result.evidence), result.evidence
    assert result.evidence[0].startswith("✓ database triggers")


def test_command_writes_json_and_records_the_report(personas, tmp_path, capsys):
    output = tmp_path / "report.json"
    call_command("compliance_report", "--format", "json", "--output", str(output))
    report = json.loads(output.read_text())
    assert {c["control"] for c in report["controls"]} == set(ALL_CONTROLS)
    entry = AuditEntry.objects.filter(event_type=EventType.COMPLIANCE_REPORT).get()
    import hashlib

    assert entry.details["sha256"] == hashlib.sha256(output.read_bytes()).hexdigest()
    assert entry.details["summary"] == report["summary"]


def test_page_for_security_and_audit_administrators_only(client, personas, make_user):
    security = make_user("sec", admin_role=AdminRole.SECURITY)
    client.force_login(personas.admin)  # a department administrator is not a platform administrator
    assert client.get("/compliance/report/", REMOTE_ADDR="127.0.0.1").status_code == 403
    client.force_login(security)
    response = client.get("/compliance/report/?format=md", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    assert response["X-Report-SHA256"]
    assert "| IA-1 |" in response.content.decode()
    assert client.get("/compliance/report/", REMOTE_ADDR="203.0.113.5").status_code == 404


def test_exports_in_chinese_and_english(client, personas, make_user):
    client.force_login(make_user("sec", admin_role=AdminRole.SECURITY))
    chinese = client.get("/compliance/report/?format=md&lang=zh-hans", REMOTE_ADDR="127.0.0.1")
    english = client.get("/compliance/report/?format=md&lang=en", REMOTE_ADDR="127.0.0.1")
    assert chinese["Content-Disposition"].endswith('-zh.md"') and english["Content-Disposition"].endswith('-en.md"')
    zh, en = chinese.content.decode(), english.content.decode()
    assert "合规自检" in zh and "安全管理员" in zh  # title, and SM-2's evidence line, in Chinese
    assert "Compliance self-check" in en and "security administrators: sec" in en
    assert "security administrators: sec" not in zh and "sec" in zh
    exported = json.loads(client.get("/compliance/report/?format=json&lang=zh-hans", REMOTE_ADDR="127.0.0.1").content)
    assert exported["language"] == "zh-hans"
    sm2 = next(c for c in exported["controls"] if c["control"] == "SM-2")
    assert sm2["status"] == PASS and sm2["status_label"] == "通过"
    assert sm2["lines"][0] == {"state": PASS, "text": sm2["evidence"][0]}
    html = client.get("/compliance/report/?format=html&lang=en", REMOTE_ADDR="127.0.0.1").content.decode()
    assert "<table>" in html and "@page" in html  # a standalone, printable file
    recorded = AuditEntry.objects.filter(event_type=EventType.COMPLIANCE_REPORT).order_by("sequence")
    assert [e.details["language"] for e in recorded] == ["zh-hans", "en", "zh-hans", "en"]


def test_page_in_the_readers_language_and_printable(client, personas, make_user):
    client.force_login(make_user("auditor", admin_role=AdminRole.AUDIT))
    client.cookies["django_language"] = "en"
    page = client.get("/compliance/report/", REMOTE_ADDR="127.0.0.1").content.decode()
    assert "audit administrators: auditor" in page and "compliance/report.css" in page
    client.cookies["django_language"] = "zh-hans"
    page = client.get("/compliance/report/", REMOTE_ADDR="127.0.0.1").content.decode()
    assert "审计管理员：auditor" in page
    css = (Path(__file__).resolve().parents[2] / "compliance" / "static" / "compliance" / "report.css").read_text()
    assert "@media print" in css and "table-header-group" in css


def test_command_language_and_fail_exit(personas, tmp_path):
    output = tmp_path / "report.md"
    with pytest.raises(SystemExit) as exit_info:
        call_command("compliance_report", "--language", "en", "--output", str(output), "--fail-on-fail")
    assert exit_info.value.code == 1  # a test installation fails several controls (no TLS, no replica)
    assert "| BR-2 | Off-site backup | fail |" in output.read_text()


def test_every_message_of_the_report_is_translated_into_chinese():
    import ast

    from django.utils import translation

    root = Path(__file__).resolve().parents[2] / "compliance"
    messages = set()
    for path in [root / "report.py", root / "report_probes.py", *(root / "report_checks").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in {"_", "gettext", "gettext_noop"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                messages.add(node.args[0].value)
    assert len(messages) > 100
    with translation.override("zh-hans"):
        untranslated = sorted(m for m in messages if translation.gettext(m) == m)
    assert not untranslated, untranslated
