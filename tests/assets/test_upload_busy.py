"""An upload that finds every decode slot taken (IP-2: ``IMAGE_DECODE_CONCURRENCY``
bounds the decodes of a process, uploads' checks included) waits at most
``IMAGE_DECODE_WAIT_SECONDS``, then is refused ``busy`` (503) with when to retry — on the portal,
the chat pane and the REST API alike — and nothing is kept."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from assets import rejections
from tests.assets import samples
from tests.assets.conftest import stored_files
from tests.assets.decode_slots import slots_taken

pytestmark = pytest.mark.django_db


def png_upload(data: bytes) -> list[SimpleUploadedFile]:
    return [SimpleUploadedFile("photo.png", data, content_type="image/png")]


@pytest.mark.parametrize("entry_point", ["portal", "chat", "api"])
def test_an_upload_without_a_free_decode_slot_is_refused_busy_with_retry_after(
    post_file, settings, asset_storage, entry_point
):
    settings.IMAGE_DECODE_CONCURRENCY = 1
    settings.IMAGE_DECODE_WAIT_SECONDS = 0.2
    data = samples.image_bytes("PNG")
    with slots_taken():
        response = post_file(entry_point, png_upload(data))
    assert response.status_code == 503, response.content
    body = response.json()
    assert (body["code"], body["retry_after"]) == ("busy", 1)
    assert body["detail"] == str(rejections.DECODE_BUSY).format(retry_after=1)
    assert response["Retry-After"] == "1"
    assert stored_files(asset_storage) == []
    # The slot is free again: the same file is stored.
    assert post_file(entry_point, png_upload(data)).status_code in (200, 201)
