"""The image budget and strict JSON through the official ``openai`` client, unchanged, against the
platform served on loopback (IP-2): the refusals a real caller gets, OpenAI-shaped. (The
client cannot send a lone surrogate at all — it refuses to encode one —; hostile JSON is tested
with raw bodies in test_hostile_json.py.)"""

from __future__ import annotations

import openai
import pytest

from tests.api.conftest import data_url
from tests.assets import damaged_samples

HUGE_PNG_URL = data_url(damaged_samples.png_declaring(8000, 5000))


@pytest.fixture(scope="module")
def client(live_api) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_api.base_url}/v1", api_key=live_api.keys["finance"], max_retries=0)


def _images(urls: list[str]) -> list[dict]:
    parts = [{"type": "text", "text": "Compare these."}]
    return [{"role": "user", "content": parts + [{"type": "image_url", "image_url": {"url": u}} for u in urls]}]


def test_forty_huge_inline_images_are_a_bad_request(client, live_api):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=live_api.model, messages=_images([HUGE_PNG_URL] * 40), max_tokens=1)
    assert refused.value.status_code == 400 and refused.value.code == "too_many_images"


def test_six_huge_inline_images_exceed_the_pixel_budget(client, live_api):
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model=live_api.model, messages=_images([HUGE_PNG_URL] * 6), max_tokens=1)
    assert refused.value.status_code == 413 and refused.value.code == "too_many_pixels"


def test_two_hundred_asset_references_are_a_bad_request(client, live_api):
    urls = [f"asset://00000000-0000-4000-8000-{index:012d}" for index in range(200)]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=live_api.model, messages=_images(urls), max_tokens=1)
    assert refused.value.code == "too_many_images"
