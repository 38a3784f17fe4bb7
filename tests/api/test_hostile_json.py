"""Hostile JSON on the REST API (IP-2): deep nesting and lone surrogates get a 400
with a message the caller can act on, never a 500, on ``/v1/chat/completions`` (OpenAI's error
shape) and on the extraction API. The JSON sign-in's own tests are in
``tests/accounts/test_api_login.py``; the websocket's in ``tests/chat/test_hostile_frames.py``."""

from __future__ import annotations

import pytest

from config.strict_json import JSON_CONSTANT, JSON_LONE_SURROGATE, JSON_OUT_OF_RANGE, JSON_TOO_DEEP

pytestmark = pytest.mark.django_db

CHAT = "/v1/chat/completions"
EXTRACT = "/api/v1/extractions"

HOSTILE_BODIES = {
    # Far past the interpreter's recursion limit: json.loads raises RecursionError, not ValueError.
    "100000 nested arrays": ("[" * 100_000 + "]" * 100_000, JSON_TOO_DEEP),
    "deep value inside a valid request": (
        '{"model": "m", "messages": [{"role": "user", "content": ' + "[" * 5000 + "]" * 5000 + "}]}",
        JSON_TOO_DEEP,
    ),
    "nested just past the limit": ('{"model": "m", "x": ' + "[" * 100 + "]" * 100 + "}", JSON_TOO_DEEP),
    "lone surrogate in the text": (
        '{"model": "m", "messages": [{"role": "user", "content": "total? \\ud800"}]}',
        JSON_LONE_SURROGATE,
    ),
    "lone low surrogate in a key": ('{"model": "m", "\\udfff": 1, "messages": []}', JSON_LONE_SURROGATE),
    "NaN": ('{"model": "m", "messages": [], "temperature": NaN}', JSON_CONSTANT.format(constant="NaN")),
    # Python reads 1e999 as infinity: stored in a JSON column it would fail (not JSON) as a 500.
    "a number past a float's range": (
        '{"model": "m", "messages": [], "temperature": -1e999}',
        JSON_OUT_OF_RANGE.format(number="-1e999"),
    ),
    "an integer past a float's range": (
        '{"model": "m", "messages": [], "temperature": 1' + "0" * 400 + "}",
        JSON_OUT_OF_RANGE.format(number="1" + "0" * 39),
    ),
}


@pytest.mark.parametrize(("raw", "message"), list(HOSTILE_BODIES.values()), ids=list(HOSTILE_BODIES))
def test_chat_completions_answers_400_in_openai_shape(api_engine, key_a, client_for, raw, message):
    response = client_for(key_a[0]).post(CHAT, data=raw, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert (error["type"], error["message"]) == ("invalid_request_error", message)


@pytest.mark.parametrize(("raw", "message"), list(HOSTILE_BODIES.values()), ids=list(HOSTILE_BODIES))
def test_the_extraction_api_answers_400(api_engine, key_a, client_for, raw, message):
    for path in (EXTRACT, "/api/v1/batches"):
        response = client_for(key_a[0]).post(path, data=raw, content_type="application/json")
        assert response.status_code == 400, (path, response.content[:300])
        assert response.json()["detail"] == message


def test_a_request_at_the_depth_limit_is_still_parsed(api_engine, key_a, client_for):
    """The control: nesting the platform understands is not refused (the model name is checked)."""
    raw = '{"model": "no-such-model", "messages": [], "x": ' + "[" * 60 + "]" * 60 + "}"
    response = client_for(key_a[0]).post(CHAT, data=raw, content_type="application/json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
