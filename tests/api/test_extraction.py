"""Structured extraction: rules, schema validation with retries, built-in templates, the API."""

from __future__ import annotations

import json

import pytest

from compliance.models import AuditEntry
from departments.tenancy import all_departments, department_scope
from inference.engine.handles import Result, Usage
from inference.engine.inputs import Message
from inference.engine.structured import RETRY_PROMPT, structured_generate
from inference.extraction.models import BatchJob, Extraction
from inference.extraction.services import (
    BUILTIN_TEMPLATES,
    rules_evaluate,
    rules_validate,
    templates_builtin_ensure,
)
from inference.models import TaskTemplate
from tests.support.extractions import GOOD_INVOICE

VAT = BUILTIN_TEMPLATES["vat-invoice"]


def _flags(outcomes):
    return sorted({o["outcome"] for o in outcomes if o["triggered"]})


def test_the_builtin_rules_raise_second_approver_and_invalid_tax_id():
    assert _flags(rules_evaluate(VAT["rules"], GOOD_INVOICE)) == ["second_approver"]
    as_text = {**GOOD_INVOICE, "total_amount": "¥12,800.00"}  # amounts written as text compare as numbers
    assert _flags(rules_evaluate(VAT["rules"], as_text)) == ["second_approver"]
    small = {**GOOD_INVOICE, "total_amount": 800, "seller_tax_id": "12345"}
    outcomes = rules_evaluate(VAT["rules"], small)
    assert _flags(outcomes) == ["invalid_tax_id"]
    assert outcomes[0]["actual"] == 800 and outcomes[0]["triggered"] is False
    # A comparison on a missing field does not raise its outcome but says so.
    missing = rules_evaluate(VAT["rules"], {"seller_tax_id": "91310115MA1H7GXX3B"})
    assert missing[0]["missing"] is True and missing[0]["triggered"] is False


def test_wildcard_paths_and_the_missing_operator():
    rules = BUILTIN_TEMPLATES["equipment-inspection"]["rules"] + [
        {"field": "equipment_id", "op": "missing", "outcome": "needs_equipment_id"}
    ]
    report = {
        "anomalies": [{"type": "rust", "severity": "low"}, {"type": "oil_leak", "severity": "high"}],
        "meter_readings": [{"name": "pressure", "value": 0.62, "unit": "MPa"}],
        "recommendation": "停机检修",
    }
    assert _flags(rules_evaluate(rules, report)) == ["environmental_check", "needs_equipment_id", "urgent_repair"]
    calm = {**report, "equipment_id": "P-101", "anomalies": [{"type": "loose", "severity": "medium"}]}
    assert _flags(rules_evaluate(rules, calm)) == []


def test_rules_validation_names_each_problem():
    assert rules_validate(VAT["rules"]) == []
    problems = rules_validate([{"field": "x", "op": "bigger", "outcome": "y"}, {"op": "matches", "value": "("}, 3])
    assert len(problems) >= 4 and problems[0].startswith("Rule 0:")
    assert rules_validate({"not": "a list"}) == ["Rules must be a list of objects."]


def _result(text: str) -> Result:
    return Result(text=text, usage=Usage(5, 3, 0.0, 0.01, 0.02, 100.0, 1), finish_reason="stop")


def test_structured_generation_retries_with_the_problem_until_the_schema_matches():
    """The demo model cannot write JSON (random weights), so a scripted model stands in here to
    drive the validation loop; the real engine runs this loop in the API tests below."""
    answers = iter(
        [
            "not json",
            json.dumps({**GOOD_INVOICE, "invoice_number": 5}),
            "```json\n" + json.dumps(GOOD_INVOICE) + "\n```",
        ]
    )
    seen: list[list[Message]] = []

    def generate(messages):
        seen.append(messages)
        return _result(next(answers))

    outcome = structured_generate([Message("user", "go")], generate=generate, schema=VAT["json_schema"], attempts=3)
    assert outcome.valid and outcome.attempts == 3 and outcome.value["invoice_number"] == "04419876"
    assert outcome.problems[0].startswith("the answer is not JSON")
    assert "does not match the schema at /invoice_number" in outcome.problems[1]
    assert seen[1][-1].text == RETRY_PROMPT.format(problem=outcome.problems[0])
    assert outcome.prompt_tokens == 15 and outcome.completion_tokens == 9


@pytest.mark.django_db
def test_builtin_templates_are_created_once_per_department(personas):
    assert templates_builtin_ensure(department=personas.department_a) == 2
    assert templates_builtin_ensure(department=personas.department_a) == 0
    with department_scope(personas.department_a):
        assert set(TaskTemplate.objects.values_list("slug", flat=True)) == set(BUILTIN_TEMPLATES)


@pytest.fixture
def uploaded(personas, system_context, key_a):
    from assets.services import asset_upload
    from tests.api.conftest import png_bytes

    def make(department=None, color=(200, 30, 60)):
        department = department or personas.department_a
        with department_scope(department):
            return asset_upload(
                department=department,
                uploaded_by=personas.admin,
                stream=iter([png_bytes((64, 48), color)]),
                original_name="invoice.png",
            )

    return make


@pytest.mark.django_db
def test_an_extraction_through_the_api_is_stored_and_audited(api_engine, key_a, client_for, uploaded, settings):
    settings.EXTRACTION_MAX_NEW_TOKENS = 16
    settings.STRUCTURED_OUTPUT_ATTEMPTS = 2
    raw, key = key_a
    asset = uploaded()
    client = client_for(raw)
    templates = client.get("/api/v1/templates").json()["results"]
    assert {t["slug"] for t in templates} == set(BUILTIN_TEMPLATES)
    response = client.post("/api/v1/extractions", {"asset": str(asset.pk), "template": "vat-invoice"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    # The demo model's answers are noise: the stored result says so instead of inventing fields.
    assert body["status"] == "invalid" and body["attempts"] == 2 and body["result"] is None
    assert body["asset"] == str(asset.pk) and body["asset_sha256"] == asset.sha256
    assert client.get(f"/api/v1/extractions/{body['id']}").json()["id"] == body["id"]
    entry = AuditEntry.objects.filter(event_type="inference.extraction").latest("sequence")
    assert entry.actor_name == key.audit_name and entry.details["status"] == "invalid"
    bad = client.post("/api/v1/extractions", {"asset": str(asset.pk), "template": "nope"}, format="json")
    assert bad.status_code == 400 and "template" in bad.json()


@pytest.mark.django_db
def test_a_batch_runs_reports_progress_cancels_and_downloads_jsonl(
    api_engine, key_a, client_for, uploaded, settings, personas
):
    from inference.extraction.batch_jobs import batch_run

    settings.EXTRACTION_MAX_NEW_TOKENS = 16
    settings.STRUCTURED_OUTPUT_ATTEMPTS = 1
    raw, _key = key_a
    assets = [uploaded(color=(i * 40, 10, 10)) for i in range(3)]
    foreign = uploaded(personas.department_b)
    client = client_for(raw)
    ids = [str(a.pk) for a in assets] + [str(foreign.pk)]
    response = client.post("/api/v1/batches", {"assets": ids, "template": "vat-invoice"}, format="json")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    assert response.json()["status"] == "queued" and response.json()["total"] == 4
    batch_run(job_id, engine=api_engine)  # what the runner thread does (started on commit)
    progress = client.get(f"/api/v1/batches/{job_id}").json()
    assert progress["status"] == "done" and progress["processed"] == 4 and progress["failed"] == 4
    lines = client.get(f"/api/v1/batches/{job_id}/results")
    rows = [json.loads(line) for line in b"".join(lines.streaming_content).splitlines()]
    assert [row["asset"] for row in rows] == ids
    assert rows[-1]["problems"] == ["no such file in this department"]  # B's file: never touched
    assert AuditEntry.objects.filter(event_type="access.denied", object_id=str(foreign.pk)).exists()
    # Cancelling: a queued job stops at once; a finished one stays as it was.
    second = client.post("/api/v1/batches", {"assets": ids[:1], "template": "vat-invoice"}, format="json").json()
    cancelled = client.post(f"/api/v1/batches/{second['id']}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["cancel_requested"] is True
    assert batch_run(second["id"], engine=api_engine).processed == 0
    with department_scope(personas.department_a):
        assert Extraction.objects.filter(batch_id=second["id"]).count() == 0
        assert BatchJob.objects.get(pk=job_id).finished_at is not None


@pytest.mark.django_db(transaction=True)
def test_batch_resume_finishes_jobs_a_stopped_process_left_behind(
    api_engine, key_a, client_for, uploaded, settings, monkeypatch
):
    from django.core.management import call_command

    from inference.extraction import api as extraction_api

    settings.EXTRACTION_MAX_NEW_TOKENS = 16
    settings.STRUCTURED_OUTPUT_ATTEMPTS = 1
    raw, _key = key_a
    ids = [str(uploaded(color=(i * 50, 20, 20)).pk) for i in range(2)]
    # The accepting process "dies" before its runner thread starts.
    monkeypatch.setattr(extraction_api, "batch_start_after_commit", lambda job, *, context: None)
    response = client_for(raw).post("/api/v1/batches", {"assets": ids, "template": "vat-invoice"}, format="json")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    call_command("batch_resume")
    with all_departments(reason="test"):
        job = BatchJob.objects.get(pk=job_id)
    assert job.status == "done"
    assert job.finished_at is not None
