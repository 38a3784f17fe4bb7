"""What one model request may decode, decided before anything is decoded (IP-2).

A request — a chat turn (``inference.chat.consumer``), a ``/v1/chat/completions`` call
(``inference.openai``), an extraction (``inference.extraction``) — carries at most ``MAX_IMAGES``
images (the engine's limit; a PDF page counts as one) and ``MAX_REQUEST_PIXELS`` pixels to
decode in all. Both are counted from what is known without decoding a pixel: how many image
references the request holds (refused at once when there are more than the limit, before any
of them is even looked up), a stored file's dimensions and page count, an inline image's header.
Only a request within both limits is decoded, one file at a time, each through one of the
process's decode slots (``assets.content.decode_slot``).
"""

from __future__ import annotations

from django.conf import settings

from assets.content import DecodeCost
from inference.engine.inputs import MAX_IMAGES

TOO_MANY_IMAGES = "A request may carry at most {limit} images (a PDF page counts as one); this one has {count}."
TOO_MANY_PIXELS = (
    "The images of this request would decode to more than {limit} pixels together; "
    "send fewer or smaller images (or fewer PDF pages)."
)


class ImageBudgetExceeded(ValueError):
    """A request over the image count or pixel budget; ``str()`` is safe to send back."""

    def __init__(self, message: str, *, code: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class ImageBudget:
    """The images and pixels one request may still decode."""

    def __init__(self, *, images: int = MAX_IMAGES, pixels: int | None = None) -> None:
        self.image_limit = images
        self.pixel_limit = settings.MAX_REQUEST_PIXELS if pixels is None else pixels
        self.images = 0
        self.pixels = 0

    @property
    def images_left(self) -> int:
        return max(0, self.image_limit - self.images)

    def refuse_count(self, count: int) -> None:
        """Refuse a request whose image references alone exceed the count (each yields at least
        one image) — before any of them is resolved or decoded."""
        if count > self.image_limit:
            raise self._too_many_images(count)

    def fits(self, cost: DecodeCost) -> bool:
        return self.images + cost.images <= self.image_limit and self.pixels + cost.pixels <= self.pixel_limit

    def take(self, cost: DecodeCost) -> None:
        """Count ``cost`` in, or refuse the request."""
        if self.images + cost.images > self.image_limit:
            raise self._too_many_images(self.images + cost.images)
        if self.pixels + cost.pixels > self.pixel_limit:
            raise ImageBudgetExceeded(
                TOO_MANY_PIXELS.format(limit=self.pixel_limit), code="too_many_pixels", status=413
            )
        self.images += cost.images
        self.pixels += cost.pixels

    def _too_many_images(self, count: int) -> ImageBudgetExceeded:
        return ImageBudgetExceeded(
            TOO_MANY_IMAGES.format(limit=self.image_limit, count=count), code="too_many_images", status=400
        )
