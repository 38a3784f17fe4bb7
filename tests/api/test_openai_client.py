"""The official ``openai`` client, unchanged, against the platform served on loopback."""

from __future__ import annotations

import openai
import pytest

from inference.engine.core import DEMO_LABEL
from inference.openai.images import REMOTE_URL_REFUSED
from tests.api.conftest import data_url, png_bytes


@pytest.fixture(scope="module")
def client(live_api) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_api.base_url}/v1", api_key=live_api.keys["finance"], max_retries=0)


def _image_message(url: str) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is on this invoice?"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]


def test_models_list(client, live_api):
    models = client.models.list().data
    assert [model.id for model in models] == [live_api.model]
    assert models[0].model_extra["metadata"]["label"] == DEMO_LABEL
    assert client.models.retrieve(live_api.model).id == live_api.model


def test_chat_with_an_inline_image(client, live_api):
    completion = client.chat.completions.create(
        model=live_api.model,
        messages=_image_message(data_url(png_bytes())),
        max_tokens=6,
        temperature=0,
        seed=3,
    )
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert 0 < completion.usage.completion_tokens <= 6
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_streaming_yields_chunks_and_usage(client, live_api):
    stream = client.chat.completions.create(
        model=live_api.model,
        messages=_image_message(data_url(png_bytes((40, 40), (10, 120, 200)))),
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= 6
    assert isinstance(text, str)
    # The stream's audit entry is written when it ends, in the request's context.
    audit = live_api.shell(
        "from compliance.models import AuditEntry; "
        "e = [e for e in AuditEntry.objects.filter(event_type='inference.call').order_by('sequence') "
        "if e.details.get('stream') is True][-1]; "
        "s = AuditEntry.objects.filter(event_type='inference.start', request_id=e.request_id).first(); "
        "print(e.outcome, e.actor_type, e.department_slug, e.details['completion_tokens'], bool(e.request_id), "
        "s is not None and s.sequence < e.sequence and s.details['prompt_sha256'] == e.details['prompt_sha256'])"
    )
    # ... and its start before the first token (AU-4), in the same request.
    assert audit.split() == ["success", "api_key", "finance", str(chunks[-1].usage.completion_tokens), "True", "True"]


def test_errors_arrive_as_the_clients_exceptions(client, live_api):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(
            model=live_api.model, messages=_image_message("https://example.invalid/invoice.png"), max_tokens=4
        )
    assert error.value.status_code == 400
    assert error.value.body["message"] == REMOTE_URL_REFUSED
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    bad = openai.OpenAI(base_url=f"{live_api.base_url}/v1", api_key="mmk_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
