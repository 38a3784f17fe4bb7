"""Decrypting reads of an asset the caller already obtained through ``selectors.asset_get``.

Nothing here writes plaintext anywhere: downloads stream authenticated chunks, the model and the
thumbnails get decoded images straight from a decrypting reader.

A page that fails to decode when it is used (a file stored before its pages were all checked at
upload, or a renderer that fails where the upload check passed) raises ``AssetUnreadable`` — the
caller answers a clean 4xx or error frame — and is marked unusable on the asset, so that every
later use refuses it at once, before decoding anything (``asset_unusable_page``).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

from PIL import Image

from assets import content, keyring
from assets.chunk_format import DecryptingReader
from assets.models import Asset
from assets.storage import blob_decrypted_chunks, blob_open

DEFAULT_MODEL_SIDE = 1600
THUMBNAIL_SIDE = 320

FILE_UNREADABLE = "The file {name!r} could not be decoded: it is damaged."
PAGE_UNREADABLE = "Page {page} of the file {name!r} could not be decoded: it is damaged."


class AssetUnreadable(Exception):
    """A file (page) that cannot be decoded; ``str()`` is safe to send back (English, like the
    API's and the chat protocol's messages)."""

    code = "unreadable_file"

    def __init__(self, asset: Asset, page: int) -> None:
        name = asset.original_name[:80]
        paged = not asset.content_type.startswith("image/")  # PDF, Office file, DICOM frames
        message = PAGE_UNREADABLE.format(page=page, name=name) if paged else FILE_UNREADABLE.format(name=name)
        super().__init__(message)
        self.asset = asset
        self.page = page


def _data_key(asset: Asset) -> bytes:
    return keyring.keyring_load().unwrap(asset.key_id, asset.wrapped_key, binding=asset.storage_name)


def asset_plaintext_chunks(asset: Asset) -> Iterator[bytes]:
    """The file's bytes, each chunk authenticated before it is yielded; a tampered or truncated
    blob raises ``BlobIntegrityError`` at the bad chunk (so a download stops short)."""
    return blob_decrypted_chunks(asset.storage_name, _data_key(asset))


def asset_open_reader(asset: Asset) -> DecryptingReader:
    """A seekable plaintext view of the file (close it when done)."""
    return DecryptingReader(
        _data_key(asset), blob_open(asset.storage_name), identity=(asset.department_id, asset.storage_name)
    )


def asset_unusable_page(asset: Asset, *, max_pages: int = content.MODEL_PAGES_PER_FILE) -> int | None:
    """The first page among the first ``max_pages`` already known not to decode, if any."""
    used = [page for page in asset.unusable_pages or () if isinstance(page, int) and 1 <= page <= max_pages]
    return min(used) if used else None


def asset_page_images(
    asset: Asset, *, max_pages: int = content.MODEL_PAGES_PER_FILE, max_side: int = DEFAULT_MODEL_SIDE
) -> list[Image.Image]:
    """RGB images for the model: the image itself, or the first ``max_pages`` pages of a PDF,
    an Office file (its text rendered, then its embedded images) or a DICOM file (its frames,
    de-identified and windowed).

    Raises AssetUnreadable (a page marked unusable before, or one that fails now and is marked)
    and ``content.DecodeBusy`` (no decode slot freed up in time)."""
    known = asset_unusable_page(asset, max_pages=max_pages)
    if known is not None:
        raise AssetUnreadable(asset, known)
    try:
        with asset_open_reader(asset) as reader:
            return content.page_images(
                content.KINDS[asset.content_type], reader, max_pages=max_pages, max_side=max_side
            )
    except content.PageUnreadable as failure:
        from assets.services import asset_page_unusable_mark

        asset_page_unusable_mark(asset=asset, page=failure.page)
        raise AssetUnreadable(asset, failure.page) from None


def asset_document_pages(asset: Asset, pages, *, max_side: int = DEFAULT_MODEL_SIDE) -> list[Image.Image]:
    """Given pages (1-based, in that order) of an Office or DICOM file, only those rendered:
    what a retrieval's choice of pages needs (``content.page_images_at``; PDFs render their own
    way). Raises AssetUnreadable like ``asset_page_images``."""
    marked = [page for page in pages if page in (asset.unusable_pages or ()) or not 1 <= page <= asset.page_count]
    if marked:
        raise AssetUnreadable(asset, min(marked))  # a page the file lacks is not marked on it
    try:
        with asset_open_reader(asset) as reader:
            return content.page_images_at(content.KINDS[asset.content_type], reader, pages, max_side=max_side)
    except content.PageUnreadable as failure:
        from assets.services import asset_page_unusable_mark

        asset_page_unusable_mark(asset=asset, page=failure.page)
        raise AssetUnreadable(asset, failure.page) from None


def asset_thumbnail_png(asset: Asset, *, side: int = THUMBNAIL_SIDE) -> bytes:
    """A small PNG preview made on the fly, kept only in memory (never cached in clear)."""
    (image,) = asset_page_images(asset, max_pages=1, max_side=side)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def asset_verify(asset: Asset) -> None:
    """Decrypt the whole blob, checking every chunk's tag; raises ``BlobIntegrityError``."""
    for _chunk in asset_plaintext_chunks(asset):
        pass
