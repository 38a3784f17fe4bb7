"""Shared fixtures: the three personas of every access test, and the throw-away services.

Personas (after Healthchecks' alice/bob/charlie): ``admin`` administers department A,
``member`` is an ordinary member of A, ``outsider`` belongs to department B only and must see
nothing of A.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from compliance.context import RequestContext, request_context

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def requirement_missing(message: str):
    """A real component a test needs is absent: a skip in a quick local run, a failure in CI,
    because CI must prove the real thing. The one place that decides this."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def require_service_url(variable: str, what: str) -> str:
    """The URL of a throw-away service started by scripts/testenv.py.

    Outside CI a missing service skips the test (a quick local loop on SQLite); in CI it fails.
    """
    url = os.environ.get(variable)
    if url:
        return url
    requirement_missing(f"{variable} is not set: {what} is started by scripts/testenv.py (make test)")


def require_postgresql(what: str) -> str:
    """The throw-away PostgreSQL server's URL (see requirement_missing)."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        return url
    requirement_missing(f"{what} needs PostgreSQL: it runs under make test (this run uses SQLite)")


@contextlib.contextmanager
def postgresql_database(what: str, prefix: str) -> Iterator[str]:
    """A database of its own on the throw-away PostgreSQL server (see require_postgresql), named
    ``prefix`` and a random suffix: its URL; dropped afterwards, connections and all."""
    server = require_postgresql(what)
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Personas:
    department_a: object
    department_b: object
    admin: object
    member: object
    outsider: object


@pytest.fixture
def make_user(db, django_user_model):
    counter = {"n": 0}

    def make(username: str | None = None, **fields):
        counter["n"] += 1
        user = django_user_model(username=username or f"user{counter['n']}", **fields)
        user.set_password("Correct-Horse-9")
        user.save()
        return user

    return make


@pytest.fixture
def personas(db, make_user) -> Personas:
    from accounts.roles import MembershipRole
    from departments.services import department_create, membership_add

    department_a = department_create(slug="finance", name="财务部 Finance", acting_user="system")
    department_b = department_create(slug="quality", name="质量部 Quality", acting_user="system")
    admin = make_user("alice")
    member = make_user("bob")
    outsider = make_user("charlie")
    membership_add(user=admin, department=department_a, role=MembershipRole.ADMIN, acting_user="system")
    membership_add(user=member, department=department_a, acting_user="system")
    membership_add(user=outsider, department=department_b, acting_user="system")
    return Personas(department_a, department_b, admin, member, outsider)


@pytest.fixture
def system_context():
    """An audit context like a request's, for services called outside a request in tests."""
    with request_context(RequestContext(request_id="test-request-0001", source_ip="127.0.0.1", user_agent="pytest")):
        yield


@pytest.fixture(scope="session", autouse=True)
def _asset_storage_outside_the_checkout(tmp_path_factory) -> None:
    """A test that names no storage of its own stores in a folder of this session, never in the
    checkout's var/ (a developer's ``make run`` data, and what the next run's residue checks see)."""
    from django.conf import settings

    folder = tmp_path_factory.mktemp("session-assets")
    settings.ASSET_STORAGE_DIR = folder / "asset-storage"
    settings.ASSET_MASTER_KEY_FILE = folder / "asset-keys"


@pytest.fixture
def tmp_asset_storage(settings, tmp_path) -> Path:
    """The asset storage directory and master key ring under the test's tmp_path (never var/)."""
    settings.ASSET_STORAGE_DIR = tmp_path / "asset-storage"
    settings.ASSET_MASTER_KEY_FILE = tmp_path / "asset-keys"
    return settings.ASSET_STORAGE_DIR


ALL_DEPARTMENT_SCOPES = ["chat", "assets:read", "assets:write", "extract"]


@pytest.fixture
def make_key(personas, system_context):
    """``make_key(department=None, scopes=..., **fields) -> (raw key, ApiKey)``; A's admin creates it."""
    from datetime import timedelta

    from django.utils import timezone

    from departments.api_keys.services import api_key_create

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
    """``client_for(raw_key, **extra)``: a DRF client sending that key as its bearer token."""
    from rest_framework.test import APIClient

    def make(raw_key: str | None, **extra) -> APIClient:
        client = APIClient(**extra)
        if raw_key:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        return client

    return make


@pytest.fixture
def record_submits(monkeypatch):
    """``record_submits(engine) -> calls``: the messages of every request ``engine`` receives from
    then on, in ``calls`` (the real submit still runs)."""

    def record(engine) -> list[list]:
        calls = []
        real = engine.submit

        def submit(messages, **kwargs):
            calls.append(list(messages))
            return real(messages, **kwargs)

        monkeypatch.setattr(engine, "submit", submit)
        return calls

    return record


@pytest.fixture(scope="session")
def demo_model_factory(tmp_path_factory):
    """``build(spec)``: the demo model for a ``DemoModelSpec``, with its manifest, built at most once
    per test session whoever asks. Shared read-only: a test that changes a model copies it first."""
    import inference  # noqa: F401  (sets the offline switches before transformers loads)
    from inference.engine.demo_model import DemoModelSpec, build_demo_model
    from inference.engine.manifest import manifest_write

    root = tmp_path_factory.mktemp("demo-models")
    built: dict[DemoModelSpec, Path] = {}

    def build(spec: DemoModelSpec | None = None) -> Path:
        spec = spec or DemoModelSpec()
        if spec not in built:
            path = build_demo_model(root / f"{spec.family}-{spec.size}-{len(built)}", spec)
            manifest_write(path)
            built[spec] = path
        return built[spec]

    return build


@pytest.fixture(scope="session")
def shared_demo_model_dir(demo_model_factory) -> Path:
    """The tiny demo model (Qwen2.5-VL family) with its manifest, built once per test session."""
    return demo_model_factory()


@pytest.fixture(scope="session")
def endless_demo_model_dir(shared_demo_model_dir, tmp_path_factory) -> Path:
    """The demo model with every special token suppressed (generation_config.json's suppress_tokens,
    which the engine honours as generate does): random weights would otherwise end some answers
    after a few tokens, and a token that decodes to nothing would make no visible progress. Every
    answer runs to its length, growing at every step."""
    import shutil

    from transformers import AutoTokenizer

    from inference.engine.manifest import manifest_write

    target = tmp_path_factory.mktemp("endless") / "model"
    shutil.copytree(shared_demo_model_dir, target)
    config_path = target / "generation_config.json"
    config = json.loads(config_path.read_text())
    eos = config["eos_token_id"]
    special = set(AutoTokenizer.from_pretrained(target).all_special_ids)
    special |= set(eos if isinstance(eos, list) else [eos])
    config["suppress_tokens"] = sorted(special)
    config_path.write_text(json.dumps(config))
    manifest_write(target)
    return target


@pytest.fixture(scope="session")
def shared_demo_model(shared_demo_model_dir):
    """That model loaded (fp32), once per session; engines built around it share its weights."""
    from inference.engine.loading import load_model

    return load_model(shared_demo_model_dir, quantization="fp32")


@pytest.fixture(scope="session")
def model_loaded_once(shared_demo_model, shared_demo_model_dir):
    """``model_loaded_once(path, quantization="fp32", **options)``: the model at ``path`` loaded once per
    session and shared (the demo model's fp32 load is ``shared_demo_model`` itself)."""
    from inference.engine.loading import load_model

    loaded: dict[tuple, object] = {}

    def load(path: Path, quantization: str = "fp32", **options):
        key = (path, quantization, tuple(sorted(options.items())))
        if key not in loaded:
            if path == shared_demo_model_dir and quantization == "fp32" and not options:
                loaded[key] = shared_demo_model
            else:
                loaded[key] = load_model(path, quantization=quantization, **options)
        return loaded[key]

    return load


@pytest.fixture
def serve_engine():
    """``serve_engine(engine)``: ``engine`` is the process's engine (what require_engine() returns)
    until the test ends; ``None`` serves "the model is still loading". Through the public
    ``inference.runtime.engine_override``; the caller still owns, and shuts down, the engine."""
    from contextlib import ExitStack

    from inference.runtime import engine_override

    with ExitStack() as stack:

        def serve(engine):
            return stack.enter_context(engine_override(engine))

        yield serve


@pytest.fixture
def shots(tmp_path) -> Path:
    """The folder a browser test saves its screenshots in, in the test's temporary directory."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder


@pytest.fixture
def live_server_factory(tmp_path):
    """Start the platform on loopback (tests/support/live_server.py); every server is stopped afterwards."""
    from tests.support.live_server import LiveServer

    servers = []

    def start(*, prepare=None, behind_proxy: bool = False, **kwargs) -> LiveServer:
        server = LiveServer(tmp_path / f"server{len(servers)}", **kwargs)
        servers.append(server)
        return server.start(prepare=prepare, behind_proxy=behind_proxy)

    yield start
    for server in servers:
        server.stop()
        # Shown by pytest only when the test failed: what the server said while it ran.
        print(f"--- {server.log_path} (last 6000 characters) ---\n{server.log()[-6000:]}")


@pytest.fixture
def redis_url() -> str:
    return require_service_url("TEST_REDIS_URL", "Redis")


def channel_layer_use(request, settings, backend: str) -> None:
    """CHANNEL_LAYERS set to ``backend``: "redis" (the throw-away Redis, through the redis_url
    fixture) or "in-memory"."""
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
        settings.CHANNEL_LAYERS = {
            "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [url]}}
        }
    else:
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
