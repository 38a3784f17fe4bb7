"""/v1/chat/completions with a department PDF (``asset://<id>``): the pages sent to the model
(pinned, retrieved from a real text layer, else the first), returned as the extra top-level
field ``pages`` (plain and streamed) and listed in the audit entry. In process with the demo
engine; every page of the generated PDF has its own width, so the images the engine receives
tell which pages they are (``engine.submit`` is wrapped to look, and still runs)."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync

from assets.documents.jobs import text_layer_run
from assets.documents.models import TextLayer, TextLayerStatus
from compliance.models import AuditEntry
from departments.tenancy import all_departments, department_scope
from inference.openai.images import MODEL_IMAGE_SIDE
from tests.api.conftest import data_url, png_bytes
from tests.assets.test_retrieval_pdf import rendered_width, text_pdf

pytestmark = pytest.mark.django_db

CHAT = "/v1/chat/completions"

# A maintenance manual: the answer to the question below is on page 8; other pages share its words.
MANUAL = [
    "Maintenance manual\nContents: filters, oil, pressure, safety",
    "Safety\nSwitch the machine off before opening any cover.",
    "Oil\nThe oil filter is replaced every 250 operating hours.",
    "Pressure\nThe air pressure of the tyres is checked weekly.",
    "Cleaning\nWipe the cover with a dry cloth.",
    "Noise\nA loud noise means the belt is worn.",
    "Belt\nThe belt is tensioned after the first 50 hours.",
    "Air intake\nReplace the air filter element every 500 operating hours, or sooner in dusty air.",
    "Storage\nStore the machine in a dry room.",
    "Transport\nLift the machine with a forklift only.",
    "Warranty\nThe warranty covers two years of normal use.",
    "Contacts\nService hotline: 400-100-2000",
]
QUESTION = "How often does the filter of the air intake have to be swapped?"


@pytest.fixture
def submitted(api_engine, record_submits):
    return record_submits(api_engine)


@pytest.fixture
def manual(key_a, client_for):
    response = client_for(key_a[0]).post(
        "/api/v1/assets", {"file": _file(text_pdf(MANUAL), "manual.pdf")}, format="multipart"
    )
    assert response.status_code == 201, response.content
    from assets.models import Asset

    with all_departments(reason="the test looks up the file it uploaded"):
        return Asset.objects.select_related("department").get(pk=response.json()["id"])


def _file(data: bytes, name: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="application/pdf")


def _body(model: str, text: str, *urls: str, **extra) -> dict:
    parts = [{"type": "text", "text": text}] + [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return {"model": model, "messages": [{"role": "user", "content": parts}], "max_tokens": 4, **extra}


def _post(client, body):
    return client.post(CHAT, data=json.dumps(body), content_type="application/json")


async def _collect(body) -> bytes:
    return b"".join([chunk async for chunk in body])


def refs(asset, pages) -> list[dict]:
    return [{"asset": str(asset.pk), "page": page} for page in pages]


def widths(messages) -> list[int]:
    return [image.size[0] for message in messages for image in message.images]


def last_call() -> AuditEntry:
    return AuditEntry.objects.filter(event_type="inference.call").latest("sequence")


def test_pinned_pages_are_sent_returned_and_audited(api_engine, key_a, client_for, manual, submitted):
    response = _post(
        client_for(key_a[0]), _body(api_engine.info().name, "What do pages 10-11 say?", f"asset://{manual.pk}")
    )
    assert response.status_code == 200, response.content
    assert response.json()["pages"] == refs(manual, (10, 11))
    assert widths(submitted[-1]) == [rendered_width(page, MODEL_IMAGE_SIDE) for page in (10, 11)]
    assert last_call().details["pages"] == refs(manual, (10, 11))


def test_without_a_text_layer_the_first_pages_go(api_engine, key_a, client_for, manual, submitted):
    response = _post(client_for(key_a[0]), _body(api_engine.info().name, QUESTION, f"asset://{manual.pk}"))
    assert response.status_code == 200, response.content
    assert response.json()["pages"] == refs(manual, (1, 2, 3, 4))
    assert widths(submitted[-1]) == [rendered_width(page, MODEL_IMAGE_SIDE) for page in (1, 2, 3, 4)]


def test_with_a_text_layer_the_pages_about_the_question_go(api_engine, key_a, client_for, manual, submitted):
    with department_scope(manual.department_id):
        layer = TextLayer.objects.get(asset=manual)
    text_layer_run(layer.pk)  # the upload's background job, run here to its end
    layer.refresh_from_db()
    assert layer.status == TextLayerStatus.DONE, (layer.failure, layer.failure_params)

    client = client_for(key_a[0])
    response = _post(client, _body(api_engine.info().name, QUESTION, f"asset://{manual.pk}"))
    assert response.status_code == 200, response.content
    pages = [ref["page"] for ref in response.json()["pages"]]
    assert 8 in pages and len(pages) <= 4 and pages == sorted(pages)
    assert widths(submitted[-1]) == [rendered_width(page, MODEL_IMAGE_SIDE) for page in pages]
    assert last_call().details["pages"] == response.json()["pages"]

    # Streamed: the last chunk with a finish reason carries the same field.
    stream = client.post(
        CHAT,
        data=json.dumps(_body(api_engine.info().name, QUESTION, f"asset://{manual.pk}", stream=True)),
        content_type="application/json",
    )
    chunks = [
        json.loads(line[len(b"data: ") :])
        for line in async_to_sync(_collect)(stream.streaming_content).split(b"\n\n")
        if line.startswith(b"data: {")
    ]
    finishing = [chunk for chunk in chunks if chunk["choices"] and chunk["choices"][0]["finish_reason"]]
    assert len(finishing) == 1 and finishing[0]["pages"] == response.json()["pages"]


def test_an_inline_image_draws_on_no_page(api_engine, key_a, client_for):
    response = _post(client_for(key_a[0]), _body(api_engine.info().name, "page 2?", data_url(png_bytes())))
    assert response.status_code == 200 and response.json()["pages"] == []
    assert last_call().details["pages"] == []


def test_another_departments_pdf_is_404_and_sends_nothing(api_engine, key_b, client_for, manual, submitted):
    response = _post(client_for(key_b[0]), _body(api_engine.info().name, "page 8", f"asset://{manual.pk}"))
    assert response.status_code == 404 and submitted == []
