"""Every channel that calls the model uses only what the department's administrator enabled:
the extraction API is refused and recorded when the served model is switched off for
the department, and a result records the model version (manifest SHA-256) that produced it."""

from __future__ import annotations

import pytest

from compliance.events import EventType
from compliance.models import AuditEntry
from departments.tenancy import department_scope
from inference.extraction.models import Extraction
from inference.registry.services import department_model_access_set, model_installation_record
from tests.api.conftest import png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def installed(api_engine, system_context):
    info = api_engine.info()
    return model_installation_record(
        manifest_sha256=info.manifest_sha256, name=info.name, path="/srv/models/demo", family="qwen2_5_vl"
    )


@pytest.fixture
def asset(personas, system_context):
    from assets.services import asset_upload

    with department_scope(personas.department_a):
        return asset_upload(
            department=personas.department_a,
            uploaded_by=personas.admin,
            stream=iter([png_bytes((64, 48))]),
            original_name="invoice.png",
        )


def test_extraction_uses_only_an_enabled_model_and_records_its_version(
    api_engine, installed, key_a, client_for, asset, personas, settings
):
    settings.EXTRACTION_MAX_NEW_TOKENS = 8
    settings.STRUCTURED_OUTPUT_ATTEMPTS = 1
    raw, _key = key_a
    client = client_for(raw)
    request = {"asset": str(asset.pk), "template": "vat-invoice"}
    client.get("/api/v1/templates")  # the built-in templates

    answered = client.post("/api/v1/extractions", request, format="json")
    assert answered.status_code == 201, answered.content
    with department_scope(personas.department_a):
        stored = Extraction.objects.get(pk=answered.json()["id"])
    assert stored.model_sha256 == installed.manifest_sha256

    department_model_access_set(
        department=personas.department_a, version=installed, enabled=False, acting_user=personas.admin
    )
    refused = client.post("/api/v1/extractions", request, format="json")
    assert refused.status_code == 403, refused.content
    with department_scope(personas.department_a):
        assert Extraction.objects.count() == 1  # nothing stored for the refused call
    denial = AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).latest("sequence")
    assert denial.details["action"] == "api.extract" and denial.object_id == installed.manifest_sha256
    assert denial.details["reason"] == "the model is not enabled for the department"
