"""Who may do what through the API: a key of department A never reaches B's objects (404, audited),
and each endpoint asks for exactly its scope (403, audited)."""

from __future__ import annotations

import uuid

import pytest

from compliance.models import AuditEntry
from departments.tenancy import department_scope
from inference.extraction.models import BatchJob, Extraction
from inference.extraction.services import templates_builtin_ensure
from tests.api.conftest import png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def objects_of_b(personas, system_context):
    """A file, an extraction and a batch job of department B (quality)."""
    from assets.services import asset_upload

    department = personas.department_b
    templates_builtin_ensure(department=department)
    with department_scope(department):
        asset = asset_upload(
            department=department, uploaded_by=personas.outsider, stream=iter([png_bytes()]), original_name="b.png"
        )
        job = BatchJob.objects.create(department=department, template_slug="vat-invoice", asset_ids=[str(asset.pk)])
        extraction = Extraction.objects.create(
            department=department, template_slug="vat-invoice", asset=asset, asset_ref=str(asset.pk), status="invalid"
        )
    return {"asset": str(asset.pk), "batch": str(job.pk), "extraction": str(extraction.pk)}


CROSS_DEPARTMENT = [
    ("get", "/api/v1/assets/{asset}"),
    ("get", "/api/v1/assets/{asset}/content"),
    ("delete", "/api/v1/assets/{asset}"),
    ("get", "/api/v1/extractions/{extraction}"),
    ("get", "/api/v1/batches/{batch}"),
    ("post", "/api/v1/batches/{batch}/cancel"),
    ("get", "/api/v1/batches/{batch}/results"),
]


@pytest.mark.parametrize(("method", "path"), CROSS_DEPARTMENT)
def test_a_key_of_a_never_reaches_bs_objects(objects_of_b, key_a, client_for, method, path):
    raw, key = key_a
    before = AuditEntry.objects.filter(event_type="access.denied").count()
    response = getattr(client_for(raw), method)(path.format(**objects_of_b))
    assert response.status_code == 404, response.content
    denial = AuditEntry.objects.filter(event_type="access.denied").latest("sequence")
    assert AuditEntry.objects.filter(event_type="access.denied").count() == before + 1
    assert denial.actor_name == key.audit_name and denial.department_slug == "finance"


def test_bs_file_cannot_be_used_in_a_chat_or_an_extraction(api_engine, objects_of_b, key_a, client_for):
    client = client_for(key_a[0])
    body = {
        "model": api_engine.info().name,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": f"asset://{objects_of_b['asset']}"}}],
            }
        ],
    }
    response = client.post("/v1/chat/completions", body, format="json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    response = client.post(
        "/api/v1/extractions", {"asset": objects_of_b["asset"], "template": "vat-invoice"}, format="json"
    )
    assert response.status_code == 404
    reasons = AuditEntry.objects.filter(event_type="access.denied", object_id=objects_of_b["asset"])
    assert {entry.details["purpose"] for entry in reasons} == {"chat", "extraction"}


def test_lists_show_only_the_keys_department(objects_of_b, key_a, key_b, client_for):
    assert client_for(key_a[0]).get("/api/v1/assets").json()["count"] == 0
    assert client_for(key_b[0]).get("/api/v1/assets").json()["count"] == 1
    assert client_for(key_a[0]).get("/api/v1/batches").json()["count"] == 0
    assert client_for(key_a[0]).get("/api/v1/extractions").json()["count"] == 0


def test_unknown_and_malformed_ids_look_like_foreign_ones(key_a, client_for):
    client = client_for(key_a[0])
    for path in (f"/api/v1/assets/{uuid.uuid4()}", "/api/v1/assets/not-a-uuid", "/api/v1/batches/nope"):
        assert client.get(path).status_code == 404


SCOPE_MATRIX = [
    ("get", "/v1/models", "chat"),
    ("post", "/v1/chat/completions", "chat"),
    ("get", "/api/v1/assets", "assets:read"),
    ("post", "/api/v1/assets", "assets:write"),
    ("get", "/api/v1/templates", "extract"),
    ("get", "/api/v1/extractions", "extract"),
    ("post", "/api/v1/extractions", "extract"),
    ("get", "/api/v1/batches", "extract"),
    ("post", "/api/v1/batches", "extract"),
    ("get", "/api/v1/audit/entries", "audit:read"),
    ("get", "/api/v1/audit/export", "audit:read"),
]
SCOPES = ["chat", "assets:read", "assets:write", "extract"]


@pytest.mark.parametrize(("method", "path", "needed"), SCOPE_MATRIX)
def test_every_endpoint_asks_for_its_scope(make_key, client_for, method, path, needed):
    for scope in SCOPES:
        if scope == needed:
            continue
        raw, key = make_key(scopes=[scope])
        response = getattr(client_for(raw), method)(path, {}, format="json")
        assert response.status_code == 403, (scope, response.content)
        denial = AuditEntry.objects.filter(event_type="access.denied").latest("sequence")
        assert denial.details["reason"] == f"missing scope {needed}" and denial.actor_name == key.audit_name


def test_the_audit_key_reads_the_trail_and_nothing_else(make_user, client_for, personas, make_key):
    from departments.api_keys.services import api_key_create

    auditor = make_user("auditor", admin_role="audit")
    raw = api_key_create(department=None, name="SIEM", scopes=["audit:read"], created_by=auditor).raw_key
    client = client_for(raw)
    assert client.get("/api/v1/assets").status_code == 403
    page = client.get("/api/v1/audit/entries", {"event_type": "api_key.create", "limit": 5})
    assert page.status_code == 200
    entries = page.json()["results"]
    assert entries and all(entry["event_type"] == "api_key.create" for entry in entries)
    assert any(e.details.get("via") == "api" for e in AuditEntry.objects.filter(event_type="audit.view"))
    export = client.get("/api/v1/audit/export", {"format": "jsonl"})
    assert export.status_code == 200 and export["Content-Type"] == "application/x-ndjson"
    import json

    lines = [json.loads(line) for line in b"".join(export).splitlines()]
    sequences = [line["sequence"] for line in lines]
    assert sequences == sorted(sequences) and len(lines) >= 4
    assert set(lines[0]) == {
        "sequence", "timestamp", "actor_type", "actor_id", "actor_name", "department_id", "department_slug",
        "event_type", "outcome", "object_type", "object_id", "object_repr", "source_ip", "user_agent",
        "request_id", "details", "format_version", "sealed_at", "prev_hash", "hash",
    }  # fmt: skip
    csv_export = client.get("/api/v1/audit/export", {"format": "csv"})
    header = b"".join(csv_export).split(b"\r\n", 1)[0]
    assert header.startswith(b"sequence,timestamp,actor_type")
    assert [e.details.get("via") for e in AuditEntry.objects.filter(event_type="audit.export")].count("api") == 2


def test_the_audit_api_is_hidden_outside_the_admin_networks(make_user, client_for, settings):
    import ipaddress

    from departments.api_keys.services import api_key_create

    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("10.99.0.0/16")]
    auditor = make_user("auditor", admin_role="audit")
    raw = api_key_create(department=None, name="SIEM", scopes=["audit:read"], created_by=auditor).raw_key
    assert client_for(raw).get("/api/v1/audit/entries").status_code == 404
