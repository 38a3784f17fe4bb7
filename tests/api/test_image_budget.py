"""The image budget on the REST API (IP-2): ``/v1/chat/completions`` and
``/api/v1/extractions`` count a request's images and total pixels before decoding any (from
inline images' headers and stored files' sizes), bound concurrent decoding (busy: 429 +
Retry-After) and answer a damaged file with a clean 400 that marks it unusable.

"Nothing was decoded" is shown structurally (``DecodeSpy``: no decode slot taken, Pillow's pixel
loader never called), not by timing. The real demo engine, PostgreSQL under ``make test``."""

from __future__ import annotations

import json

import pytest

from assets.models import Asset
from compliance.events import EventType
from compliance.models import AuditEntry
from departments.tenancy import all_departments
from inference.engine.inputs import MAX_IMAGES
from inference.image_budget import TOO_MANY_PIXELS
from inference.openai import images as openai_images
from inference.openai import views as openai_views
from tests.api.conftest import data_url, png_bytes
from tests.assets import damaged_samples
from tests.assets.decode_slots import DecodeSpy, slots_taken, stored_for_member

pytestmark = pytest.mark.django_db

CHAT = "/v1/chat/completions"
EXTRACT = "/api/v1/extractions"
# A 40-megapixel image, as the report sent forty of: its header says 8000 x 5000.
HUGE_PNG = damaged_samples.png_declaring(8000, 5000)


@pytest.fixture
def spy(monkeypatch) -> DecodeSpy:
    return DecodeSpy(monkeypatch)


@pytest.fixture
def store(personas, system_context):
    """Store bytes in department A through the assets service (as bob)."""

    def do(data: bytes, name: str = "scan.png", *, checked_pages: int | None = None) -> Asset:
        return stored_for_member(personas, data, name, checked_pages=checked_pages)

    return do


def _chat_body(model: str, urls: list[str], text: str = "What is in these?") -> dict:
    parts = [{"type": "text", "text": text}] + [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return {"model": model, "messages": [{"role": "user", "content": parts}], "max_tokens": 4}


def _post(client, path: str, body) -> object:
    return client.post(path, data=json.dumps(body), content_type="application/json")


# --- /v1/chat/completions ------------------------------------------------------------------------


def test_forty_huge_inline_images_are_refused_by_count_before_any_is_looked_at(
    api_engine, key_a, client_for, spy, monkeypatch
):
    resolved = []
    real_resolve = openai_views.image_source_resolve
    monkeypatch.setattr(
        openai_views, "image_source_resolve", lambda *a, **k: resolved.append(a) or real_resolve(*a, **k)
    )
    response = _post(client_for(key_a[0]), CHAT, _chat_body(api_engine.info().name, [data_url(HUGE_PNG)] * 40))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("too_many_images", "messages")
    assert f"at most {MAX_IMAGES} images" in error["message"] and "has 40" in error["message"]
    assert resolved == [] and spy.decoded_nothing


def test_huge_inline_images_within_the_count_are_refused_by_their_pixels_from_the_headers(
    api_engine, key_a, client_for, spy, settings
):
    settings.MAX_REQUEST_PIXELS = 200_000_000
    count = settings.MAX_REQUEST_PIXELS // (8000 * 5000) + 1  # 6: one more than the budget holds
    assert count <= MAX_IMAGES
    response = _post(client_for(key_a[0]), CHAT, _chat_body(api_engine.info().name, [data_url(HUGE_PNG)] * count))
    assert response.status_code == 413, response.content
    error = response.json()["error"]
    assert error["code"] == "too_many_pixels"
    assert error["message"] == TOO_MANY_PIXELS.format(limit=settings.MAX_REQUEST_PIXELS)
    assert spy.decoded_nothing


def test_two_hundred_asset_references_are_refused_before_any_is_looked_up(
    api_engine, key_a, client_for, spy, monkeypatch
):
    looked_up = []
    real_get = openai_images.asset_get
    monkeypatch.setattr(openai_images, "asset_get", lambda **k: looked_up.append(k) or real_get(**k))
    urls = [f"asset://00000000-0000-4000-8000-{index:012d}" for index in range(200)]
    response = _post(client_for(key_a[0]), CHAT, _chat_body(api_engine.info().name, urls))
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "too_many_images"
    assert looked_up == [] and spy.decoded_nothing
    # Not one of those ids was even looked for: no access refusal was recorded.
    assert not AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).exists()


def test_stored_files_over_the_pixel_budget_are_refused_from_their_stored_sizes(
    api_engine, key_a, client_for, store, settings, monkeypatch
):
    first, second = store(png_bytes((64, 48))), store(png_bytes((48, 64), color=(1, 2, 3)), "other.png")
    settings.MAX_REQUEST_PIXELS = 64 * 48 * 2 - 1
    spy = DecodeSpy(monkeypatch)
    urls = [f"asset://{first.pk}", f"asset://{second.pk}"]
    response = _post(client_for(key_a[0]), CHAT, _chat_body(api_engine.info().name, urls))
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_many_pixels"
    assert spy.decoded_nothing
    # One of them fits: answered, and decoded (the control).
    response = _post(client_for(key_a[0]), CHAT, _chat_body(api_engine.info().name, urls[:1]))
    assert response.status_code == 200, response.content
    assert spy.slots == 1


def test_no_free_decode_slot_answers_429_with_retry_after(api_engine, key_a, client_for, settings):
    settings.IMAGE_DECODE_CONCURRENCY = 1
    settings.IMAGE_DECODE_WAIT_SECONDS = 0.2
    body = _chat_body(api_engine.info().name, [data_url(png_bytes())])
    with slots_taken():
        response = _post(client_for(key_a[0]), CHAT, body)
    assert response.status_code == 429, response.content
    assert response.json()["error"]["code"] == "decode_busy"
    assert int(response["Retry-After"]) >= 1
    # The slot is back: the same request is answered.
    assert _post(client_for(key_a[0]), CHAT, body).status_code == 200


def test_a_page_that_fails_when_used_answers_400_and_the_next_use_refuses_without_decoding(
    api_engine, key_a, client_for, store, monkeypatch
):
    asset = store(damaged_samples.pdf_with_pages(3, broken=frozenset({2})), "old.pdf", checked_pages=1)
    body = _chat_body(api_engine.info().name, [f"asset://{asset.pk}"])
    response = _post(client_for(key_a[0]), CHAT, body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "unreadable_file" and "Page 2" in error["message"]
    assert error["param"] == "messages[0].content[1]"
    with all_departments(reason="test"):
        assert Asset.objects.get(pk=asset.pk).unusable_pages == [2]
    spy = DecodeSpy(monkeypatch)
    again = _post(client_for(key_a[0]), CHAT, body)
    assert again.status_code == 400 and again.json()["error"]["code"] == "unreadable_file"
    assert spy.decoded_nothing


# --- /api/v1/extractions -------------------------------------------------------------------------


def test_an_extraction_over_the_pixel_budget_is_refused_before_decoding(
    api_engine, key_a, client_for, store, settings, monkeypatch
):
    asset = store(png_bytes((64, 48)))
    settings.MAX_REQUEST_PIXELS = 64 * 48 - 1
    spy = DecodeSpy(monkeypatch)
    response = client_for(key_a[0]).post(EXTRACT, {"asset": str(asset.pk), "template": "vat-invoice"}, format="json")
    assert response.status_code == 413, response.content
    assert response.json()["code"] == "too_many_pixels"
    assert spy.decoded_nothing


def test_an_extraction_without_a_free_decode_slot_answers_429(api_engine, key_a, client_for, store, settings):
    asset = store(png_bytes((64, 48)))
    settings.IMAGE_DECODE_CONCURRENCY = 1
    settings.IMAGE_DECODE_WAIT_SECONDS = 0.2
    with slots_taken():
        response = client_for(key_a[0]).post(
            EXTRACT, {"asset": str(asset.pk), "template": "vat-invoice"}, format="json"
        )
    assert response.status_code == 429, response.content
    assert int(response["Retry-After"]) >= 1


def test_an_extraction_of_a_damaged_page_answers_400_and_marks_it(api_engine, key_a, client_for, store, monkeypatch):
    asset = store(damaged_samples.pdf_with_pages(3, broken=frozenset({2})), "old.pdf", checked_pages=1)
    payload = {"asset": str(asset.pk), "template": "vat-invoice"}
    response = client_for(key_a[0]).post(EXTRACT, payload, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "unreadable_file"
    with all_departments(reason="test"):
        assert Asset.objects.get(pk=asset.pk).unusable_pages == [2]
    spy = DecodeSpy(monkeypatch)
    again = client_for(key_a[0]).post(EXTRACT, payload, format="json")
    assert again.status_code == 400 and again.json()["code"] == "unreadable_file"
    assert spy.decoded_nothing


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (damaged_samples.png_cuts(damaged_samples.png_many_idat())["IEND missing"], "image/png"),
        (damaged_samples.pdf_with_pages(3, broken=frozenset({2})), "application/pdf"),
    ],
    ids=["png without IEND", "pdf with a broken page 2"],
)
def test_a_damaged_inline_file_is_a_clean_400(api_engine, key_a, client_for, data, mime):
    response = _post(client_for(key_a[0]), CHAT, _chat_body(api_engine.info().name, [data_url(data, mime)]))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_image", "messages[0].content[1]")
    assert "unreadable_" in error["message"]
