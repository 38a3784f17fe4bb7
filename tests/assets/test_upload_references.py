"""Each upload is its uploader's own reference: identical bytes are stored once, and a blob goes
(crypto-shredded) only with its last reference — whether a reference is deleted by its
uploader, by retention or with a conversation (tests/chat/test_portal.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from assets.models import Asset
from assets.reading import asset_plaintext_chunks
from assets.rejections import AssetRejected
from assets.services import asset_delete, asset_purge_expired, department_usage_bytes
from compliance.events import EventType
from compliance.models import AuditEntry
from departments.tenancy import all_departments, department_scope
from tests.assets import samples
from tests.assets.conftest import stored_files

pytestmark = pytest.mark.django_db


def deletions() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(event_type=EventType.ASSET_DELETE).order_by("sequence"))


def plaintext(asset: Asset) -> bytes:
    with department_scope(asset.department_id):
        return b"".join(asset_plaintext_chunks(Asset.objects.get(pk=asset.pk)))


def test_the_first_uploader_deleting_his_file_keeps_the_second_uploaders(
    upload, personas, asset_storage, django_capture_on_commit_callbacks
):
    data = samples.image_bytes("PNG", (40, 30))
    bobs = upload(data, "scan.png")
    alices = upload(data, "scan-again.png", user=personas.admin)
    with django_capture_on_commit_callbacks(execute=True), department_scope(personas.department_a):
        asset_delete(asset=bobs, acting_user=personas.member)  # his own upload: he may delete it
    assert plaintext(alices) == data and len(stored_files(asset_storage)) == 1
    assert deletions()[-1].details["crypto_shredded"] is False
    with django_capture_on_commit_callbacks(execute=True), department_scope(personas.department_a):
        asset_delete(asset=alices, acting_user=personas.admin)
    assert deletions()[-1].details["crypto_shredded"] is True and deletions()[-1].details["references_left"] == 0
    assert stored_files(asset_storage) == []


def test_retention_keeps_a_recent_upload_of_bytes_first_uploaded_long_ago(
    upload, personas, asset_storage, django_capture_on_commit_callbacks
):
    data = samples.image_bytes("PNG", (41, 30))
    old = upload(data, "2019.png")
    with all_departments(reason="test back-dates an upload"):
        Asset.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=400))
    recent = upload(data, "today.png", user=personas.admin)
    cutoff = timezone.now() - timedelta(days=30)
    with django_capture_on_commit_callbacks(execute=True):
        assert asset_purge_expired(department=personas.department_a, cutoff=cutoff) == 1
    with department_scope(personas.department_a):
        assert list(Asset.objects.values_list("pk", flat=True)) == [recent.pk]
    assert plaintext(recent) == data and len(stored_files(asset_storage)) == 1
    entry = deletions()[-1]
    assert entry.object_id == str(old.pk) and entry.details["reason"] == "retention"
    assert entry.details["crypto_shredded"] is False


def test_the_quota_counts_a_blob_once_however_many_uploads_name_it(upload, personas, settings):
    data = samples.noisy_png((300, 300))  # ~270 kB that does not compress
    for name in ("a.png", "b.png", "c.png"):
        upload(data, name)
    assert department_usage_bytes(personas.department_a) == len(data)
    settings.DEPARTMENT_QUOTA_MB = 1
    upload(data, "d.png")  # the same bytes again take no room
    with pytest.raises(AssetRejected) as refused:
        for size in ((310, 310), (320, 320), (330, 330), (340, 340)):
            upload(samples.noisy_png(size), "new.png")
    assert refused.value.code == "quota_exceeded"


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_every_existing_upload():
    """0002 drops the one-row-per-bytes rule: rows stored before it stay, unchanged, each the
    one reference to its blob."""
    executor = MigrationExecutor(connection)
    executor.migrate([("assets", "0001_initial")])
    old_apps = executor.loader.project_state([("assets", "0001_initial")]).apps
    department = old_apps.get_model("departments", "Department").objects.create(slug="legacy", name="Legacy")
    fields = dict(size=3, content_type="image/png", classification=1, key_id="k1", wrapped_key=b"w" * 60)
    old_apps.get_model("assets", "Asset").objects.create(
        department=department, storage_name="a" * 32, original_name="old.png", sha256="1" * 64, **fields
    )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    with all_departments(reason="test inspects migrated rows"):
        (row,) = Asset.objects.filter(department__slug="legacy")
        assert (row.storage_name, row.original_name, row.sha256, row.unusable_pages) == (
            "a" * 32,
            "old.png",
            "1" * 64,
            [],
        )
        # ... and a second upload of the same bytes is now a row of its own.
        Asset.objects.create(
            department_id=row.department_id, storage_name="a" * 32, original_name="new.png", sha256="1" * 64, **fields
        )
        assert Asset.objects.filter(sha256="1" * 64).count() == 2
