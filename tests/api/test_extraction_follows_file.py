"""Extraction results and batch outputs follow their file: deleting an upload — by its
uploader, or by retention — deletes the extractions read from it, batch outputs included, listed
in the upload's ``asset.delete`` entry; another upload of the same bytes keeps its own results."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from assets.models import Asset
from assets.services import asset_delete, asset_upload
from compliance.events import EventType
from compliance.models import AuditEntry
from departments.tenancy import all_departments, department_scope
from inference.extraction.batch_jobs import batch_results_jsonl, batch_run
from inference.extraction.models import BatchJob, Extraction
from tests.api.conftest import png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def upload(personas, system_context):
    def make(user, color=(200, 30, 60), name="invoice.png", department=None):
        department = department or personas.department_a
        with department_scope(department):
            return asset_upload(
                department=department, uploaded_by=user, stream=iter([png_bytes((64, 48), color)]), original_name=name
            )

    return make


@pytest.fixture
def extract(api_engine, key_a, client_for, settings):
    settings.EXTRACTION_MAX_NEW_TOKENS = 8
    settings.STRUCTURED_OUTPUT_ATTEMPTS = 1
    client = client_for(key_a[0])

    def one(asset) -> str:
        response = client.post(
            "/api/v1/extractions", {"asset": str(asset.pk), "template": "vat-invoice"}, format="json"
        )
        assert response.status_code == 201, response.content
        return response.json()["id"]

    def batch(assets) -> str:
        response = client.post(
            "/api/v1/batches", {"assets": [str(a.pk) for a in assets], "template": "vat-invoice"}, format="json"
        )
        assert response.status_code == 202, response.content
        job_id = response.json()["id"]
        batch_run(job_id, engine=api_engine)
        return job_id

    one.batch = batch
    one.client = client
    return one


def _extractions_of(asset_pk) -> set[str]:
    with all_departments(reason="test"):
        return {str(pk) for pk in Extraction.objects.filter(asset_id=asset_pk).values_list("pk", flat=True)}


def test_deleting_an_upload_deletes_its_extractions_and_batch_outputs_only(personas, upload, extract):
    mine = upload(personas.member)
    theirs = upload(personas.admin)  # the same bytes: a reference of its own to the same blob
    assert theirs.storage_name == mine.storage_name and theirs.pk != mine.pk
    single = extract(mine)
    kept_single = extract(theirs)
    job_id = extract.batch([mine, theirs])
    mine_results = _extractions_of(mine.pk)
    assert single in mine_results and len(mine_results) == 2  # the single one and the batch output
    with all_departments(reason="test"):
        stored = Extraction.objects.get(pk=single)
        assert stored.raw_answer and stored.problems  # the demo model's noise, sealed

    asset_delete(asset=mine, acting_user=personas.member)

    with all_departments(reason="test"):
        assert not Extraction.objects.filter(pk__in=mine_results).exists()
        theirs_results = _extractions_of(theirs.pk)
        assert kept_single in theirs_results and len(theirs_results) == 2  # single + batch output
        job = BatchJob.objects.get(pk=job_id)
    lines = [json.loads(line) for line in batch_results_jsonl(job)]
    assert [line["asset"] for line in lines] == [str(theirs.pk)]  # the deleted file's output is gone
    assert job.processed == 2  # the job's history stays: it did process two files
    entry = AuditEntry.objects.filter(event_type=EventType.ASSET_DELETE, object_id=str(mine.pk)).get()
    deleted_with = entry.details["deleted_with"]["inference.extraction"]
    assert deleted_with["count"] == 2 and set(deleted_with["ids"]) == mine_results
    assert entry.details["references_left"] == 1 and entry.details["crypto_shredded"] is False
    assert extract.client.get(f"/api/v1/extractions/{single}").status_code == 404
    assert extract.client.get(f"/api/v1/extractions/{kept_single}").status_code == 200


def test_retention_takes_the_extractions_of_the_files_it_expires(personas, upload, extract, system_context):
    from compliance.models import RetentionPolicy
    from compliance.retention import purge_expired

    old = upload(personas.member, color=(10, 200, 10))
    recent = upload(personas.member, color=(10, 10, 200))
    elsewhere = upload(personas.outsider, color=(10, 200, 10), department=personas.department_b)
    old_result, recent_result = extract(old), extract(recent)
    with all_departments(reason="test"):
        Asset.objects.filter(pk__in=[old.pk, elsewhere.pk]).update(created_at=timezone.now() - timedelta(days=400))
        RetentionPolicy.objects.create(department=personas.department_a, file_days=30)

    purge_expired(include_audit=False)

    with all_departments(reason="test"):
        assert not Extraction.objects.filter(pk=old_result).exists()
        assert Extraction.objects.filter(pk=recent_result).exists()
        assert Asset.objects.filter(pk=elsewhere.pk).exists()  # department B keeps its files (no policy)
    entry = AuditEntry.objects.filter(event_type=EventType.ASSET_DELETE, object_id=str(old.pk)).get()
    assert entry.details["reason"] == "retention"
    assert entry.details["deleted_with"]["inference.extraction"]["ids"] == [old_result]
