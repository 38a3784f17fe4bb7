"""The process-wide engine: lazy thread-safe load, audit entry, readiness, stats and metrics."""

from __future__ import annotations

import shutil
import threading

import pytest

from compliance.events import EventType, Outcome
from compliance.models import AuditEntry
from inference.engine.core import DEMO_LABEL
from inference.engine.errors import MANIFEST_MISMATCH, MODEL_LOADING, ManifestError
from inference.engine.inputs import Message
from inference.runtime import get_engine, model_readiness, reset_engine
from tests.support.waiting import wait_until


@pytest.fixture
def configured(settings, demo_model_dir):
    settings.MODEL_PATH = demo_model_dir
    settings.MODEL_QUANTIZATION = "auto"
    settings.MODEL_NAME = ""
    reset_engine()
    yield settings
    reset_engine()


@pytest.mark.django_db(transaction=True)
def test_the_engine_is_loaded_once_shared_and_audited(configured, demo_model_dir):
    engines = []
    threads = [threading.Thread(target=lambda: engines.append(get_engine())) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(engines) == 3 and len({id(e) for e in engines}) == 1
    engine = engines[0]
    info = engine.info()
    assert info.is_demo and info.label == DEMO_LABEL and info.device == "cpu"
    assert info.quantization == "fp32" and "no CUDA GPU" in info.quantization_reason
    entries = list(AuditEntry.objects.filter(event_type=EventType.MODEL_LOAD))
    assert len(entries) == 1  # three callers, one load
    entry = entries[0]
    assert entry.outcome == Outcome.SUCCESS
    assert entry.object_id == info.manifest_sha256
    assert entry.details["manifest_sha256"] == info.manifest_sha256
    assert entry.details["quantization"] == "fp32" and entry.details["is_demo"] is True
    assert engine.generate([Message("user", "hi")], max_new_tokens=2, min_new_tokens=2).usage.completion_tokens == 2


@pytest.mark.django_db(transaction=True)
def test_readiness_reports_loading_then_the_model(configured, rf):
    import json

    from config import health

    with health.readiness_check_registered("model", model_readiness):
        ok, detail = model_readiness()  # the first poll starts the background load
        assert (ok, detail) == (False, MODEL_LOADING)
        wait_until(
            lambda: model_readiness() != (False, MODEL_LOADING), timeout=120, message="the model is still loading"
        )
        request = rf.get("/readyz")
        request.source_ip = "127.0.0.1"  # an operator on the machine (an administration network): the details
        response = health.readyz(request)
        assert response.status_code == 200
        assert json.loads(response.content)["checks"]["model"] == {
            "ok": True,
            "detail": "demo-qwen2_5_vl (fp32 on cpu)",
        }


@pytest.mark.django_db(transaction=True)
def test_a_tampered_model_is_refused_audited_and_not_ready(configured, demo_model_dir, tmp_path):
    copy = tmp_path / "tampered"
    shutil.copytree(demo_model_dir, copy)
    (copy / "generation_config.json").write_text('{"do_sample": true}')
    configured.MODEL_PATH = copy
    with pytest.raises(ManifestError):
        get_engine()
    with pytest.raises(ManifestError):  # remembered, not retried on every request
        get_engine()
    ok, detail = model_readiness()
    assert not ok and detail == "load failed: " + MANIFEST_MISMATCH.format(name="generation_config.json")
    entry = AuditEntry.objects.get(event_type=EventType.MODEL_LOAD)
    assert entry.outcome == Outcome.FAILURE and entry.details["code"] == "manifest_mismatch"


def test_stats_and_prometheus_metrics(engine, serve_engine):
    from prometheus_client import REGISTRY, generate_latest

    engine.generate([Message("user", "hi")], max_new_tokens=3, min_new_tokens=3)
    stats = engine.stats()
    assert stats["model"]["name"] == "demo-qwen2_5_vl"
    assert stats["queue_depth"] == 0 and stats["completion_tokens_total"] == 3
    assert stats["tokens_per_second"] > 0
    assert stats["device"]["source"] == "host"  # no GPU here: host CPU and RAM instead
    assert stats["device"]["host"]["memory_total_bytes"] > 0
    serve_engine(engine)
    text = generate_latest(REGISTRY).decode()
    assert (
        'platform_model_info{default="true",demo="true",device="cpu",family="qwen2_5_vl",name="demo-qwen2_5_vl",'
        'quantization="fp32"} 1.0'
    ) in text
    assert 'platform_inference_completion_tokens_total{model="demo-qwen2_5_vl"} 3.0' in text
    assert 'platform_inference_queue_depth{model="demo-qwen2_5_vl"} 0.0' in text
