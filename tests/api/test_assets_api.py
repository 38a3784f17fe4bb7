"""/api/v1/assets: upload (no plaintext spool), list with filters and pages, detail, download, delete."""

from __future__ import annotations

import io
import warnings

import pytest

from compliance.models import AuditEntry
from tests.api.conftest import png_bytes

pytestmark = pytest.mark.django_db


def _upload(client, data: bytes, name: str = "invoice.png"):
    return client.post("/api/v1/assets", {"file": io.BytesIO(data) if name is None else _named(data, name)})


def _named(data: bytes, name: str):
    handle = io.BytesIO(data)
    handle.name = name
    return handle


def _body(response) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the test client consumes the async stream synchronously
        return b"".join(response)


def test_upload_list_detail_download_delete(key_a, client_for, settings):
    raw, key = key_a
    client = client_for(raw)
    data = png_bytes((80, 60))
    created = _upload(client, data)
    assert created.status_code == 201, created.content
    asset = created.json()
    assert asset["content_type"] == "image/png" and asset["width"] == 80 and asset["deduplicated"] is False
    assert asset["uploaded_by"] == "alice"
    assert _upload(client, data, "again.png").json()["deduplicated"] is True
    _upload(client, png_bytes((30, 30), (0, 0, 0)), "other.png")
    listing = client.get("/api/v1/assets", {"name": "INVOICE", "limit": 1}).json()
    assert listing["count"] == 1 and listing["results"][0]["id"] == asset["id"]
    assert client.get("/api/v1/assets", {"limit": 1}).json()["next"] is not None
    assert client.get(f"/api/v1/assets/{asset['id']}").json()["sha256"] == asset["sha256"]
    download = client.get(f"/api/v1/assets/{asset['id']}/content")
    assert download.status_code == 200 and _body(download) == data
    assert download["X-Content-Type-Options"] == "nosniff" and "attachment" in download["Content-Disposition"]
    assert client.delete(f"/api/v1/assets/{asset['id']}").status_code == 204
    assert client.get(f"/api/v1/assets/{asset['id']}").status_code == 404
    events = set(AuditEntry.objects.filter(actor_name=key.audit_name).values_list("event_type", flat=True))
    assert {"asset.upload", "asset.view", "asset.download", "asset.delete"} <= events
    # Nothing but encrypted blobs ever reached the storage directory.
    for path in settings.ASSET_STORAGE_DIR.rglob("*"):
        if path.is_file():
            assert data[16:64] not in path.read_bytes()


def test_refused_uploads_answer_the_assets_codes(key_a, client_for):
    client = client_for(key_a[0])
    response = _upload(client, b"<html><script>alert(1)</script></html>", "page.png")
    assert response.status_code == 400 and response.json()["code"] == "unsupported_type"
    assert client.post("/api/v1/assets", {}).json()["code"] == "no_file"
    assert AuditEntry.objects.filter(event_type="asset.upload", outcome="failure").count() == 2


def test_a_read_only_key_cannot_upload_or_delete(make_key, client_for):
    raw, _ = make_key(scopes=["assets:read"])
    assert _upload(client_for(raw), png_bytes()).status_code == 403


def test_the_hand_built_list_items_equal_the_documented_serializer(key_a, client_for, personas):
    from assets.api import AssetSerializer
    from assets.models import Asset
    from departments.tenancy import department_scope

    client = client_for(key_a[0])
    _upload(client, png_bytes((20, 20)))
    item = client.get("/api/v1/assets").json()["results"][0]
    with department_scope(personas.department_a):
        assert item == dict(AssetSerializer(Asset.objects.get(pk=item["id"])).data)
