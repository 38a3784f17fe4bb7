"""Every assets test gets its own storage directory and master key ring (never var/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from departments.tenancy import department_scope


@pytest.fixture(autouse=True)
def asset_storage(settings, tmp_path) -> Path:
    settings.ASSET_STORAGE_DIR = tmp_path / "asset-storage"
    settings.ASSET_MASTER_KEY_FILE = tmp_path / "asset-keys"
    settings.MAX_UPLOAD_MB = 5
    settings.MAX_IMAGE_PIXELS = 4_000_000
    settings.MAX_PDF_PAGES = 50
    settings.DEPARTMENT_QUOTA_MB = 0
    return settings.ASSET_STORAGE_DIR


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
