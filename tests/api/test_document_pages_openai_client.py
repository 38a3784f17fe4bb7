"""The official ``openai`` client, unchanged, against a loopback server that reads text layers in
the background: a question about a department PDF gets its answer from the retrieved pages, the
extra top-level ``pages`` field rides along (the client keeps it in ``model_extra`` and is not
disturbed by it), plain and streamed."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.api.conftest import live_api_server
from tests.api.test_document_pages import MANUAL, QUESTION
from tests.assets.test_retrieval_pdf import text_pdf
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def live(tmp_path_factory, shared_demo_model_dir):
    with live_api_server(
        tmp_path_factory.mktemp("live-pages"),
        shared_demo_model_dir,
        {"API_KEY_RATE_PER_MINUTE": "100000", "MAX_NEW_TOKENS_CAP": "64", "TEXT_LAYER_WORKERS": "1"},
    ) as server:
        yield server


def _layer_done(live, asset_id: str) -> bool:
    status = live.shell(
        "from departments.tenancy import all_departments\n"
        "from assets.documents.models import TextLayer\n"
        "with all_departments(reason='test'):\n"
        f"    print(TextLayer.objects.get(asset_id='{asset_id}').status)"
    )
    assert status.split()[-1] in ("pending", "running", "done"), status
    return status.split()[-1] == "done"


def test_the_client_gets_the_retrieved_pages_and_ignores_the_extra_field(live):
    headers = {"Authorization": f"Bearer {live.keys['finance']}"}
    uploaded = httpx.post(
        f"{live.base_url}/api/v1/assets",
        headers=headers,
        files={"file": ("manual.pdf", text_pdf(MANUAL), "application/pdf")},
        timeout=60,
    )
    assert uploaded.status_code == 201, uploaded.text
    asset_id = uploaded.json()["id"]
    wait_until(lambda: _layer_done(live, asset_id), timeout=120, interval=0.5, message="no text layer")

    client = openai.OpenAI(base_url=f"{live.base_url}/v1", api_key=live.keys["finance"], max_retries=0)
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": QUESTION},
                {"type": "image_url", "image_url": {"url": f"asset://{asset_id}"}},
            ],
        }
    ]
    completion = client.chat.completions.create(model=live.model, messages=messages, max_tokens=4)
    assert isinstance(completion.choices[0].message.content, str) and completion.usage.completion_tokens > 0
    pages = completion.model_extra["pages"]
    assert {"asset": asset_id, "page": 8} in pages and len(pages) <= 4
    assert all(ref["asset"] == asset_id for ref in pages)

    stream = client.chat.completions.create(model=live.model, messages=messages, max_tokens=4, stream=True)
    chunks = list(stream)
    finishing = [chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0].model_extra["pages"] == pages
