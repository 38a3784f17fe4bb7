"""Every assets test gets its own storage directory and master key ring (never var/); uploads
through each entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from departments.tenancy import department_scope
from tests.conftest import require_postgresql, requirement_missing


@pytest.fixture(autouse=True)
def asset_storage(tmp_asset_storage, settings) -> Path:
    settings.MAX_UPLOAD_MB = 5
    settings.MAX_IMAGE_PIXELS = 4_000_000
    settings.MAX_PDF_PAGES = 50
    settings.DEPARTMENT_QUOTA_MB = 0
    return tmp_asset_storage


@pytest.fixture
def text_layer_worker(settings):
    """A text-layer worker thread beside the test, and the CJK font the test documents use."""
    from tests.assets.text_layer_documents import font_missing

    if font_missing():
        requirement_missing(font_missing())
    # A worker thread writes while the test reads: SQLite's shared in-memory test database
    # answers that with "table is locked" at once (no busy wait), PostgreSQL as in production.
    require_postgresql("the text-layer jobs (a worker thread beside the test)")
    settings.TEXT_LAYER_WORKERS = 1
    settings.MAX_UPLOAD_MB = 20  # the born-digital PDF embeds the whole CJK font (~9.5 MB)


def stored_files(root: Path) -> list[Path]:
    """Every file under the storage directory (blobs and temp files alike)."""
    if not root.exists():
        return []
    return sorted(path for path in root.rglob("*") if path.is_file())


@pytest.fixture
def upload(personas, system_context):
    """Upload bytes into department A as ``member`` (bob) through the service."""
    from assets.services import asset_upload

    def do(data: bytes, name: str = "photo.png", *, user=None, department=None, **kwargs):
        department = department or personas.department_a
        with department_scope(department):
            return asset_upload(
                department=department,
                uploaded_by=user or personas.member,
                stream=iter([data[i : i + 7000] for i in range(0, len(data), 7000)]),
                original_name=name,
                **kwargs,
            )

    return do


@pytest.fixture
def post_file(personas, settings, make_key, client_for):
    """``post_file(entry_point, files) -> response``: bob through the portal or the chat pane, an
    API key of bob's department (created by alice) through the REST API."""
    settings.API_KEY_RATE_PER_MINUTE = 1000
    cache.clear()
    raw_key, key = make_key(scopes=["assets:read", "assets:write"])
    api = client_for(raw_key)
    portal = Client()
    portal.force_login(personas.member)
    slug = personas.department_a.slug

    def post(entry_point: str, files: list[SimpleUploadedFile]):
        data = {"file": files} if files else {"note": "no file"}
        if entry_point == "api":
            return api.post("/api/v1/assets", data)
        name = "assets:upload" if entry_point == "portal" else "chat:upload"
        return portal.post(reverse(name, args=[slug]), data, HTTP_ACCEPT="application/json")

    post.key = key
    return post
