"""API tests: keys for the personas' departments, a DRF client, an in-process demo engine."""

from __future__ import annotations

import base64
import io
from datetime import timedelta

import pytest
from django.utils import timezone
from PIL import Image
from rest_framework.test import APIClient

from departments.api_key_services import api_key_create


@pytest.fixture(autouse=True)
def api_storage(settings, tmp_path):
    settings.ASSET_STORAGE_DIR = tmp_path / "asset-storage"
    settings.ASSET_MASTER_KEY_FILE = tmp_path / "asset-keys"
    settings.MAX_UPLOAD_MB = 5
    settings.API_KEY_RATE_PER_MINUTE = 1000
    from django.core.cache import cache

    cache.clear()


ALL_DEPARTMENT_SCOPES = ["chat", "assets:read", "assets:write", "extract"]


@pytest.fixture
def make_key(personas, system_context):
    """``make_key(department=None, scopes=..., **fields) -> (raw key, ApiKey)``; A's admin creates it."""

    def make(department=None, scopes=None, *, created_by=None, **fields):
        created = api_key_create(
            department=department if department is not None else personas.department_a,
            name=fields.pop("name", "ERP"),
            scopes=scopes if scopes is not None else ALL_DEPARTMENT_SCOPES,
            created_by=created_by or personas.admin,
            expires_at=fields.pop("expires_at", timezone.now() + timedelta(days=30)),
            **fields,
        )
        return created.raw_key, created.key

    return make


@pytest.fixture
def client_for():
    def make(raw_key: str | None, **extra) -> APIClient:
        client = APIClient(**extra)
        if raw_key:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        return client

    return make


@pytest.fixture
def key_a(make_key):
    return make_key()


@pytest.fixture
def key_b(make_key, personas):
    return make_key(personas.department_b, created_by=personas.outsider)


def png_bytes(size=(64, 48), color=(200, 30, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@pytest.fixture(scope="session")
def api_loaded_model(shared_demo_model_dir):
    from inference.loader import load_model

    return load_model(shared_demo_model_dir, quantization="fp32")


@pytest.fixture
def api_engine(api_loaded_model, monkeypatch, settings):
    """The demo model as the process's engine (what require_engine() returns) for this test."""
    from inference import engine as engine_module
    from inference.engine import Engine, EngineLimits

    engine = Engine(api_loaded_model, EngineLimits(batch_window_seconds=0.0, max_new_tokens_cap=256))
    monkeypatch.setattr(engine_module, "_engine", engine)
    yield engine
    engine.shutdown()
