"""Watching and occupying the process's decode slots (``assets.content.decode_slot``) in tests.

``DecodeSpy`` proves structurally that nothing was decoded: it counts every decode slot taken
(every decode of the platform goes through one) and every call of Pillow's pixel loader.
``slots_taken`` holds every slot on a helper thread, as a burst of other requests would.
``stored_for_member`` puts a file in department A as the image budget tests find it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest
from django.conf import settings
from PIL import ImageFile

from assets import content
from departments.tenancy import department_scope

SLOT_DEADLINE_SECONDS = 10
# The real one, whatever a DecodeSpy put in its place: the helpers' slots are not the request's.
_decode_slot = content.decode_slot


class DecodeSpy:
    def __init__(self, monkeypatch) -> None:
        self.slots = 0
        self.pixel_loads = 0
        real_slot, real_load = content.decode_slot, ImageFile.ImageFile.load

        @contextlib.contextmanager
        def counted_slot():
            self.slots += 1
            with real_slot():
                yield

        def counted_load(image, *args, **kwargs):
            self.pixel_loads += 1
            return real_load(image, *args, **kwargs)

        monkeypatch.setattr(content, "decode_slot", counted_slot)
        monkeypatch.setattr(ImageFile.ImageFile, "load", counted_load)

    @property
    def decoded_nothing(self) -> bool:
        return self.slots == 0 and self.pixel_loads == 0


@contextlib.contextmanager
def slots_taken() -> Iterator[None]:
    """Every decode slot of the process held by helper threads until the block ends."""
    release = threading.Event()
    holding = threading.Semaphore(0)
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with _decode_slot():
                holding.release()
                release.wait(SLOT_DEADLINE_SECONDS * 6)
        except BaseException as error:  # reported to the test below
            errors.append(error)
            holding.release()

    threads = [threading.Thread(target=hold, daemon=True) for _ in range(settings.IMAGE_DECODE_CONCURRENCY)]
    for thread in threads:
        thread.start()
    try:
        for _ in threads:
            assert holding.acquire(timeout=SLOT_DEADLINE_SECONDS), "a helper thread did not get its decode slot"
        assert not errors, errors
        yield
    finally:
        release.set()
        for thread in threads:
            thread.join(SLOT_DEADLINE_SECONDS)


def stored_for_member(personas, data: bytes, name: str, *, checked_pages: int | None = None):
    """Store bytes in department A through the assets service (as bob); with ``checked_pages``,
    as a version that checked only that many pages of a PDF at upload did."""
    from assets.services import asset_upload

    with pytest.MonkeyPatch.context() as patch:
        if checked_pages is not None:  # stored as a version that checked fewer pages did
            patch.setattr(content, "MODEL_PAGES_PER_FILE", checked_pages)
        with department_scope(personas.department_a):
            return asset_upload(
                department=personas.department_a,
                uploaded_by=personas.member,
                stream=iter([data]),
                original_name=name,
            )
