"""API tests: keys for the personas' departments (made with the root ``make_key``), image helpers,
an in-process demo engine and a live API server."""

from __future__ import annotations

import base64
import contextlib
import io
from collections.abc import Iterator

import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def api_storage(tmp_asset_storage, settings):
    settings.MAX_UPLOAD_MB = 5
    settings.API_KEY_RATE_PER_MINUTE = 1000
    from django.core.cache import cache

    cache.clear()


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


@pytest.fixture
def api_engine(shared_demo_model):
    """The demo model as the process's engine (what require_engine() returns) for this test."""
    from inference.engine.core import Engine, EngineLimits
    from inference.runtime import engine_override

    engine = Engine(shared_demo_model, EngineLimits(batch_window_seconds=0.0, max_new_tokens_cap=256))
    try:
        with engine_override(engine):
            yield engine
    finally:
        engine.shutdown()


LIVE_PREPARE = r"""
import json
from datetime import timedelta
from django.utils import timezone
from accounts.models import User
from departments.services import department_create, membership_add
from departments.api_keys.services import api_key_create
finance = department_create(slug="finance", name="Finance", acting_user="system")
quality = department_create(slug="quality", name="Quality", acting_user="system")
alice = User.objects.create_user("alice", password="Correct-Horse-9")
auditor = User.objects.create_user("auditor", password="Correct-Horse-9", admin_role="audit")
membership_add(user=alice, department=finance, role="admin", acting_user="system")
expires = timezone.now() + timedelta(days=1)
keys = {
    "finance": api_key_create(department=finance, name="ERP", scopes=["chat", "assets:read", "assets:write", "extract"],
                              created_by=alice, expires_at=expires).raw_key,
    "quality": api_key_create(department=quality, name="MES", scopes=["chat", "assets:read", "assets:write", "extract"],
                              created_by=alice, expires_at=expires).raw_key,
    "audit": api_key_create(department=None, name="SIEM", scopes=["audit:read"], created_by=auditor,
                            expires_at=expires).raw_key,
}
print(json.dumps(keys))
"""


@contextlib.contextmanager
def live_api_server(directory, model_path, env: dict[str, str]) -> Iterator:
    """A loopback server on ``model_path`` with ``env`` and the demo model loaded: its three keys in
    ``.keys`` (LIVE_PREPARE), its model id in ``.model``; stopped afterwards whatever happens."""
    import json

    from tests.support.live_server import LiveServer

    server = LiveServer(directory, model_path=model_path, env=env)
    server.start()
    try:
        server.keys = json.loads(server.shell(LIVE_PREPARE).splitlines()[-1])
        # The first call starts the model load: 503 until it is ready.
        models = server.wait_for(
            "/v1/models", headers={"Authorization": f"Bearer {server.keys['finance']}"}, timeout=120
        )
        server.model = models["data"][0]["id"]
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def live_api(tmp_path_factory, shared_demo_model_dir):
    """One loopback server per test module with the demo model loaded and three keys."""
    with live_api_server(
        tmp_path_factory.mktemp("live-api"),
        shared_demo_model_dir,
        {"API_KEY_RATE_PER_MINUTE": "100000", "MAX_NEW_TOKENS_CAP": "64", "BATCH_WINDOW_MS": "0"},
    ) as server:
        yield server
