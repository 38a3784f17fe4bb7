"""/v1/chat/completions and /v1/models in process (the official client's tests run over HTTP)."""

from __future__ import annotations

import hashlib
import json

import pytest

from compliance.models import AuditEntry
from compliance.preview_crypto import entry_previews_open
from inference.engine.core import DEMO_LABEL
from inference.openai.images import REMOTE_URL_REFUSED
from tests.api.conftest import data_url, png_bytes

pytestmark = pytest.mark.django_db

CHAT = "/v1/chat/completions"


def _body(model: str, **extra) -> dict:
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": "You read invoices."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Total? Call me on 13812345678."},
                    {"type": "image_url", "image_url": {"url": data_url(png_bytes())}},
                ],
            },
        ],
        "max_tokens": 8,
        **extra,
    }


def _post(client, body):
    return client.post(CHAT, data=json.dumps(body), content_type="application/json")


def test_models_list_shows_the_demo_label(api_engine, key_a, client_for):
    response = client_for(key_a[0]).get("/v1/models")
    assert response.status_code == 200
    (model,) = response.json()["data"]
    assert model["id"] == api_engine.info().name and model["object"] == "model"
    assert model["metadata"]["is_demo"] is True and model["metadata"]["label"] == DEMO_LABEL


def test_a_completion_with_an_inline_image_is_answered_and_audited(api_engine, key_a, client_for):
    raw, key = key_a
    response = _post(client_for(raw), _body(api_engine.info().name, temperature=0, seed=7, stop=["\n\n"]))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    usage = body["usage"]
    assert (
        usage["completion_tokens"] <= 8 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    )
    entry = AuditEntry.objects.filter(event_type="inference.call").latest("sequence")
    assert entry.outcome == "success" and entry.actor_name == key.audit_name
    assert entry.department_slug == "finance"
    details = entry.details
    assert len(details["prompt_sha256"]) == 64 and details["channel"] == "v1"
    assert details["image_sha256"] == [hashlib.sha256(png_bytes()).hexdigest()]
    preview = entry_previews_open(entry).details["prompt_preview"]  # sealed; opened as the auditor reads it
    assert "13812345678" not in preview and "5678" in preview
    assert details["completion_tokens"] == usage["completion_tokens"] and details["latency_ms"] > 0


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"model": "gpt-4o"}, 404, "model_not_found"),
        ({"messages": []}, 400, "invalid_request"),
        ({"temperature": 5}, 400, "invalid_request"),
        ({"n": 2}, 400, "unsupported_value"),
        ({"tools": [{"type": "function"}]}, 400, "unsupported_parameter"),
        ({"response_format": {"type": "xml"}}, 400, "invalid_value"),
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 12}}}}, 400, "invalid_schema"),
    ],
)
def test_invalid_requests_answer_openai_shaped_errors(api_engine, key_a, client_for, change, status, code):
    response = _post(client_for(key_a[0]), {**_body(api_engine.info().name), **change})
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code


def test_remote_image_urls_are_refused_without_any_fetch(api_engine, key_a, client_for):
    body = _body(api_engine.info().name)
    body["messages"][1]["content"][1]["image_url"]["url"] = "http://169.254.169.254/latest/meta-data"
    response = _post(client_for(key_a[0]), body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == REMOTE_URL_REFUSED and error["code"] == "remote_image_url_refused"
    assert error["param"] == "messages[1].content[1]"


def test_a_polyglot_inline_image_is_refused_by_content(api_engine, key_a, client_for):
    body = _body(api_engine.info().name)
    payload = png_bytes()[:200] + b"<script>alert(1)</script>" + png_bytes()[200:]
    body["messages"][1]["content"][1]["image_url"]["url"] = data_url(payload)
    response = _post(client_for(key_a[0]), body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_image"


def test_json_object_response_format_is_validated_and_retried(api_engine, key_a, client_for, settings):
    """The demo model's answers are noise: never JSON, so every attempt is used and the call
    fails with 422 (the validation path; the success path is tested in test_structured)."""
    settings.STRUCTURED_OUTPUT_ATTEMPTS = 2
    response = _post(client_for(key_a[0]), _body(api_engine.info().name, response_format={"type": "json_object"}))
    assert response.status_code == 422, response.content
    assert response.json()["error"]["code"] == "response_format_unsatisfied"
    entry = AuditEntry.objects.filter(event_type="inference.call").latest("sequence")
    assert entry.outcome == "failure" and entry.details["attempts"] == 2
    assert entry.details["error"] == "response_format_unsatisfied"


def test_without_the_chat_scope_the_call_is_refused_and_audited(api_engine, make_key, client_for):
    raw, key = make_key(scopes=["assets:read"])
    response = _post(client_for(raw), _body(api_engine.info().name))
    assert response.status_code == 403 and response.json()["error"]["type"] == "permission_error"
    denial = AuditEntry.objects.filter(event_type="access.denied").latest("sequence")
    assert denial.details["reason"] == "missing scope chat" and denial.actor_name == key.audit_name


def test_a_busy_engine_answers_429_with_retry_after(shared_demo_model, serve_engine, key_a, client_for):
    from inference.engine.core import Engine, EngineLimits

    engine = serve_engine(Engine(shared_demo_model, EngineLimits(max_queue=0)))  # no waiting room at all
    try:
        response = _post(client_for(key_a[0]), _body(engine.info().name))
    finally:
        engine.shutdown()
    assert response.status_code == 429, response.content
    assert response.json()["error"]["code"] == "engine_busy" and int(response["Retry-After"]) >= 1


def test_no_engine_answers_503(key_a, client_for, serve_engine):
    serve_engine(None)  # still loading
    response = client_for(key_a[0]).get("/v1/models")
    assert response.status_code == 503 and response.json()["error"]["code"] == "model_unavailable"
