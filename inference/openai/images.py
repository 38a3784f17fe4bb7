"""Images in API requests: ``data:`` URLs (decoded and validated here) and ``asset://<id>``
references to the department's files. Remote ``http(s)://`` URLs are refused: the platform
never fetches anything from the network on a caller's behalf (no egress, no SSRF).

A ``data:`` image gets the same checks as an upload, by content: the format from its magic bytes
(polyglots refused), the pixel and page limits, a real and complete decode. Nothing touches disk.

Resolving a reference (``image_source_resolve``) decodes nothing: it finds the file (an inline
image's bytes, a department file through ``asset_get``) and what decoding it will cost, from the
header or the stored dimensions, so that the request's image budget (``inference.image_budget``)
is settled before the first pixel is decoded. ``ImageSource.decode()`` then decodes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from PIL import Image

from assets import content
from assets.documents.model_pages import page_refs, pages_choose, pages_cost, pages_images, pages_unusable
from assets.reading import AssetUnreadable
from assets.rejections import AssetRejected
from assets.selectors import asset_get

# What the model sees of a PDF: its first pages, each one image (checked at upload).
MAX_PDF_PAGES_PER_IMAGE = content.MODEL_PAGES_PER_FILE
MODEL_IMAGE_SIDE = 1600

REMOTE_URL_REFUSED = (
    "Remote image URLs are not fetched (the platform has no internet access). Send the image inline as a "
    "data: URL (data:image/png;base64,...) or upload it to /api/v1/assets and refer to it as asset://<id>."
)
URL_UNSUPPORTED = "Unsupported image URL: use a data: URL or asset://<id>."
DATA_URL_MALFORMED = "Malformed data: URL: expected data:<type>;base64,<base64 data>."
DATA_URL_TOO_LARGE = "The inline image is larger than {limit} MiB; upload it to /api/v1/assets instead."
IMAGE_REFUSED = "The inline image was refused ({code}): {detail}"
INLINE_IMAGE_UNREADABLE = "The inline image could not be decoded (page {page}): it is damaged."

_DATA_URL = re.compile(r"\Adata:([\w.+/-]*)(?:;[\w.+-]+=[\w.+-]+)*;base64,", re.IGNORECASE)


class ImageRefused(ValueError):
    """A caller's image reference that cannot be used; ``str()`` is safe to return."""

    def __init__(self, message: str, *, code: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass
class DecodedImages:
    images: list[Image.Image] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)  # of each source (for the audit entry)
    asset_ids: list[str] = field(default_factory=list)
    pages: list[dict] = field(default_factory=list)  # the PDF pages sent ({"asset": id, "page": n})


@dataclass(frozen=True)
class ImageSource:
    """One image reference, found and costed, not decoded yet."""

    sha256: str
    cost: content.DecodeCost
    decode: Callable[[], list[Image.Image]]  # ImageRefused / AssetUnreadable / DecodeBusy
    asset_id: str | None = None
    pages: tuple[dict, ...] = ()  # a PDF's pages chosen for the request (assets.documents.model_pages)


def _refused(rejection: AssetRejected) -> ImageRefused:
    message = IMAGE_REFUSED.format(code=rejection.code, detail=rejection.message)
    return ImageRefused(message, code="invalid_image", status=rejection.status)


def _data_source(url: str) -> ImageSource:
    match = _DATA_URL.match(url)
    if not match:
        raise ImageRefused(DATA_URL_MALFORMED, code="invalid_image_url")
    limit = settings.API_INLINE_IMAGE_MB * 1024 * 1024
    encoded = url[match.end() :]
    if len(encoded) * 3 // 4 > limit + 3:
        raise ImageRefused(
            DATA_URL_TOO_LARGE.format(limit=settings.API_INLINE_IMAGE_MB), code="image_too_large", status=413
        )
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRefused(DATA_URL_MALFORMED, code="invalid_image_url") from None
    try:
        kind = content.sniff_prefix(data[: content.PREFIX_SIZE])
        content.check_tail(kind, data[-content.TAIL_SIZE :])
        cost = content.probe_cost(kind, io.BytesIO(data), max_pages=MAX_PDF_PAGES_PER_IMAGE, max_side=MODEL_IMAGE_SIDE)
    except AssetRejected as rejection:
        raise _refused(rejection) from None

    def decode() -> list[Image.Image]:
        reader = io.BytesIO(data)
        try:
            with content.decode_slot():  # held across both steps (DecodeBusy when none frees up)
                content.inspect_content(kind, reader, len(data))  # the upload's checks
                return content.page_images(kind, reader, max_pages=MAX_PDF_PAGES_PER_IMAGE, max_side=MODEL_IMAGE_SIDE)
        except AssetRejected as rejection:
            raise _refused(rejection) from None
        except content.PageUnreadable as failure:
            raise ImageRefused(INLINE_IMAGE_UNREADABLE.format(page=failure.page), code="invalid_image") from None

    return ImageSource(sha256=hashlib.sha256(data).hexdigest(), cost=cost, decode=decode)


def image_source_resolve(
    url: Any, *, department, actor, query: str = "", limit: int = MAX_PDF_PAGES_PER_IMAGE
) -> ImageSource:
    """Find one image reference and its decoding cost, decoding nothing (raising ImageRefused,
    AssetUnreadable for a file already known to be damaged, or 404 for a foreign asset).

    A department PDF sends the pages ``query`` pins or is about, else its first pages
    (``assets.documents.model_pages``), at most ``limit`` (what the request's image count has
    left); an inline ``data:`` PDF sends its first pages."""
    if not isinstance(url, str) or not url:
        raise ImageRefused(URL_UNSUPPORTED, code="invalid_image_url")
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("http", "https", "ftp", "file", "ws", "wss"):
        raise ImageRefused(REMOTE_URL_REFUSED, code="remote_image_url_refused")
    if scheme == "data":
        return _data_source(url)
    if url.startswith("asset://"):
        asset = asset_get(department=department, asset_id=url[len("asset://") :], actor=actor, purpose="chat")
        # As many pages as before retrieval (the budget refuses a request over it), more if pinned.
        limit = max(MAX_PDF_PAGES_PER_IMAGE, limit)
        choice = pages_choose(asset, query, limit=limit, per_file=MAX_PDF_PAGES_PER_IMAGE)
        known = pages_unusable(asset, choice)
        if known is not None:
            raise AssetUnreadable(asset, known)
        return ImageSource(
            sha256=asset.sha256,
            cost=pages_cost(asset, choice, max_side=MODEL_IMAGE_SIDE),
            decode=lambda: pages_images(asset, choice, max_side=MODEL_IMAGE_SIDE),
            asset_id=str(asset.pk),
            pages=tuple(page_refs(asset, choice)),
        )
    raise ImageRefused(URL_UNSUPPORTED, code="invalid_image_url")
