"""One audit vocabulary for model calls (inference/model_calls.py): the same prompt with the same
image sent through the websocket chat, /v1/chat/completions, an extraction and a batch job leaves
``inference.call`` entries with one set of keys, the right channel, the loaded model's manifest
SHA-256, the image by its file's SHA-256 and, where the prompt is the same, the same prompt hash.

An extraction builds its own prompt (the template's instruction and schema as a system message,
then ``EXTRACTION_PROMPT`` with the file), so its hash cannot equal the chat's: the test sends
that very prompt through /v1 as well and expects the extraction's hash there.

A real engine on the tiny demo model, real API keys, the real websocket consumer and the batch
runner thread (started on commit, as in production)."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from rest_framework.test import APIClient

from compliance.events import EventType
from compliance.models import AuditEntry
from compliance.preview_crypto import entry_previews_open
from departments.tenancy import all_departments, department_scope
from inference.engine.core import Engine, EngineLimits
from inference.model_calls import ModelCallResult
from tests.api.conftest import data_url
from tests.chat.conftest import SHORT_TURN, frame, open_chat, png_bytes, receive_until
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

PROMPT = "What is the total of this invoice? Call 13812345678 if unsure."
IMAGE = png_bytes((200, 30, 30), (64, 48))
RESULT_KEYS = set(ModelCallResult(outcome="success", latency_ms=0).details())


@pytest.fixture
def engine(shared_demo_model):
    from inference.runtime import engine_override

    engine = Engine(shared_demo_model, EngineLimits(batch_window_seconds=0.0, max_new_tokens_cap=256))
    with engine_override(engine):
        yield engine
    engine.shutdown()


@pytest.fixture
def storage(tmp_asset_storage, settings):
    settings.API_KEY_RATE_PER_MINUTE = 1000
    settings.EXTRACTION_MAX_NEW_TOKENS = 8
    settings.STRUCTURED_OUTPUT_ATTEMPTS = 1
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
async def close_helper_thread_connections():
    """The sync_to_async helpers' thread keeps a connection that must not outlive the database."""
    yield
    from django.db import connections

    await sync_to_async(connections.close_all)()


def _set_up(personas):
    """The invoice image uploaded by bob in finance, and an API key of finance."""
    from compliance.context import RequestContext, request_context
    from departments.api_keys.services import api_key_create
    from tests.support.assets import asset_upload_bytes

    with request_context(RequestContext(request_id="set-up", source_ip="127.0.0.1", user_agent="pytest")):
        asset = asset_upload_bytes(IMAGE, "invoice.png", department=personas.department_a, uploaded_by=personas.member)
        key = api_key_create(
            department=personas.department_a,
            name="ERP",
            scopes=["chat", "assets:read", "extract"],
            created_by=personas.admin,
            expires_at=timezone.now() + timedelta(days=1),
        )
    return asset, key.raw_key


def _calls(channel: str) -> list[AuditEntry]:
    return [
        entry
        for entry in AuditEntry.objects.filter(event_type=EventType.INFERENCE).order_by("sequence")
        if entry.details.get("channel") == channel
    ]


def _through_the_api(raw_key: str, asset, model: str) -> dict[str, AuditEntry]:
    """/v1 with the chat's prompt (image inline and as asset://), an extraction, a batch job,
    and /v1 with the extraction's own prompt; their inference.call entries by name."""
    from inference.extraction.models import BatchJob, BatchStatus
    from inference.extraction.services import EXTRACTION_PROMPT, extraction_messages
    from inference.models import TaskTemplate

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")

    def complete(messages):
        response = client.post(
            "/v1/chat/completions", {"model": model, "messages": messages, "max_tokens": 4}, format="json"
        )
        assert response.status_code == 200, response.content
        return _calls("v1")[-1]

    def user(text, url):
        return {
            "role": "user",
            "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}],
        }

    entries = {
        "v1 inline": complete([user(PROMPT, data_url(IMAGE))]),
        "v1 asset": complete([user(PROMPT, f"asset://{asset.pk}")]),
    }
    response = client.post("/api/v1/extractions", {"asset": str(asset.pk), "template": "vat-invoice"}, format="json")
    assert response.status_code == 201, response.content
    entries["extraction"] = _calls("extraction")[-1]
    response = client.post("/api/v1/batches", {"assets": [str(asset.pk)], "template": "vat-invoice"}, format="json")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]

    def finished_job():  # the runner thread started on commit
        with all_departments(reason="the test waits for its batch job"):
            job = BatchJob.objects.get(pk=job_id)
        return job if job.is_finished else None

    job = wait_until(finished_job, timeout=60, interval=0.05, message="the batch job did not finish")
    assert job.status == BatchStatus.DONE and job.processed == 1
    entries["batch"] = _calls("batch")[-1]
    with department_scope(asset.department_id):
        template = TaskTemplate.objects.get(slug="vat-invoice")
    system = extraction_messages(template, [])[0].text
    entries["v1 extraction prompt"] = complete(
        [{"role": "system", "content": system}, user(EXTRACTION_PROMPT, data_url(IMAGE))]
    )
    return entries


async def test_the_same_prompt_is_audited_alike_through_every_channel(personas, engine, storage):
    asset, raw_key = await sync_to_async(_set_up)(personas)
    info = engine.info()

    chat = await open_chat("bob")
    await chat.send_to(text_data=frame("turn.start", text=PROMPT, assets=[str(asset.pk)], params=SHORT_TURN))
    _frames, done = await receive_until(chat, {"done", "error"})
    assert done["type"] == "done", done
    await chat.disconnect()
    websocket = (await sync_to_async(_calls)("websocket"))[-1]
    start = await sync_to_async(
        lambda: AuditEntry.objects.get(event_type=EventType.INFERENCE_START, request_id=websocket.request_id)
    )()

    entries = {"websocket": websocket, **await sync_to_async(_through_the_api)(raw_key, asset, info.name)}

    # One schema: every entry has the same keys; the start entry has the call's facts only.
    keys = set(websocket.details)
    for name, entry in entries.items():
        assert set(entry.details) == keys, name
        assert entry.outcome in ("success", "failure"), name
        assert entry.details["model"] == info.name and entry.details["model_sha256"] == info.manifest_sha256, name
        assert len(info.manifest_sha256) == 64
        assert entry.details["image_sha256"] == [asset.sha256] == [hashlib.sha256(IMAGE).hexdigest()], name
        assert entry.details["attempts"] >= 1 and entry.details["latency_ms"] > 0, name
        assert entry.details["completion_tokens"] > 0 and entry.details["prompt_tokens"] > 0, name
    # A first turn's start entry holds no preview (its conversation does not exist yet), so has
    # nothing sealed either: the call's facts and hashes only.
    assert set(start.details) == keys - RESULT_KEYS - {"sealed"} and start.details["prompt_preview"] == ""
    assert start.details["prompt_sha256"] == websocket.details["prompt_sha256"]
    assert start.sequence < websocket.sequence

    channels = {name: entry.details["channel"] for name, entry in entries.items()}
    assert channels == {
        "websocket": "websocket",
        "v1 inline": "v1",
        "v1 asset": "v1",
        "extraction": "extraction",
        "batch": "batch",
        "v1 extraction prompt": "v1",
    }

    # The same prompt and file hash alike, however the image travelled (upload, inline, asset://),
    # and the hash is the documented one.
    canonical = json.dumps([["user", PROMPT, [asset.sha256]]], ensure_ascii=False, separators=(",", ":"))
    expected = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    opened = await sync_to_async(lambda: {name: entry_previews_open(entry) for name, entry in entries.items()})()
    for name in ("websocket", "v1 inline", "v1 asset"):
        assert entries[name].details["prompt_sha256"] == expected, name
        preview = opened[name].details["prompt_preview"]  # sealed; opened as the auditor reads it
        assert preview.startswith("What is the total of this invoice? Call 138****5678"), name
        assert "13812345678" not in json.dumps(entries[name].details, ensure_ascii=False), name
    assert entries["v1 asset"].details["asset_ids"] == [str(asset.pk)] == websocket.details["asset_ids"]
    assert entries["v1 inline"].details["asset_ids"] == []

    # An extraction's own prompt: the same hash from the API, a single extraction and a batch.
    extraction_hash = entries["extraction"].details["prompt_sha256"]
    assert extraction_hash != expected
    assert entries["batch"].details["prompt_sha256"] == extraction_hash
    assert entries["v1 extraction prompt"].details["prompt_sha256"] == extraction_hash
    for name in ("extraction", "batch"):
        entry = entries[name]
        assert entry.details["response_format"] == "json_schema" and entry.details["stream"] is False, name
        assert entry.object_type == "inference.extraction" and entry.actor_type == "api_key", name
        business = await sync_to_async(
            lambda entry=entry: AuditEntry.objects.get(event_type=EventType.EXTRACTION, object_id=entry.object_id)
        )()
        # The model call, then the result it produced, in the same request.
        assert business.request_id == entry.request_id and business.sequence > entry.sequence
