"""Decrypting reads of an asset the caller already obtained through ``selectors.asset_get``.

Nothing here writes plaintext anywhere: downloads stream authenticated chunks, the model and the
thumbnails get decoded images straight from a decrypting reader.
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


def _data_key(asset: Asset) -> bytes:
    return keyring.keyring_load().unwrap(asset.key_id, asset.wrapped_key, binding=asset.storage_name)


def asset_plaintext_chunks(asset: Asset) -> Iterator[bytes]:
    """The file's bytes, each chunk authenticated before it is yielded; a tampered or truncated
    blob raises ``BlobIntegrityError`` at the bad chunk (so a download stops short)."""
    return blob_decrypted_chunks(asset.storage_name, _data_key(asset))


def asset_open_reader(asset: Asset) -> DecryptingReader:
    """A seekable plaintext view of the file (close it when done)."""
    return DecryptingReader(_data_key(asset), blob_open(asset.storage_name))


def asset_page_images(asset: Asset, *, max_pages: int = 8, max_side: int = DEFAULT_MODEL_SIDE) -> list[Image.Image]:
    """RGB images for the model: the image itself, or the first ``max_pages`` PDF pages."""
    with asset_open_reader(asset) as reader:
        return content.page_images(content.KINDS[asset.content_type], reader, max_pages=max_pages, max_side=max_side)


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
