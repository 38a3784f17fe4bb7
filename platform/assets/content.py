"""Deciding what a file is by its content, and decoding it: never by name or client MIME type.

Two steps. ``sniff_prefix`` looks at the first bytes while the upload is still streaming (so a
plainly wrong file is refused before it is stored) and refuses ambiguous content: a file whose
head matches one format but also carries another's signature (``%PDF-`` inside an image's
first KiB, HTML/SVG/script markup, a ZIP header) — the usual polyglot tricks. ``inspect_content``
then decodes the whole file for real, from the encrypted blob through a decrypting reader
(Pillow for images, pdfium for PDF), enforcing the pixel and page limits before any pixel is
allocated. A tail check catches ZIP archives appended to an image (JPEG+JAR and the like) and
data hidden after a PNG's IEND chunk.
"""

from __future__ import annotations

import re
import struct
import threading
from dataclasses import dataclass
from typing import BinaryIO

import pypdfium2 as pdfium
from django.conf import settings
from PIL import Image, UnidentifiedImageError

from assets import rejections

# How many leading / trailing bytes the stager keeps (in memory only) for the checks below.
PREFIX_SIZE = 1024
TAIL_SIZE = 64 * 1024 + 22  # a ZIP end-of-central-directory record lies within this of the end

# pdfium is not thread-safe: every call into it goes through this lock.
PDFIUM_LOCK = threading.RLock()


@dataclass(frozen=True)
class Kind:
    name: str  # also the Pillow format name for images
    mime: str
    extension: str


JPEG = Kind("JPEG", "image/jpeg", "jpg")
PNG = Kind("PNG", "image/png", "png")
BMP = Kind("BMP", "image/bmp", "bmp")
WEBP = Kind("WEBP", "image/webp", "webp")
TIFF = Kind("TIFF", "image/tiff", "tiff")
GIF = Kind("GIF", "image/gif", "gif")
PDF = Kind("PDF", "application/pdf", "pdf")
KINDS = {kind.mime: kind for kind in (JPEG, PNG, BMP, WEBP, TIFF, GIF, PDF)}

_SIGNATURES: tuple[tuple[Kind, re.Pattern[bytes]], ...] = (
    (JPEG, re.compile(rb"\A\xff\xd8\xff")),
    (PNG, re.compile(rb"\A\x89PNG\r\n\x1a\n")),
    (GIF, re.compile(rb"\AGIF8[79]a")),
    (WEBP, re.compile(rb"\ARIFF....WEBP", re.DOTALL)),
    (TIFF, re.compile(rb"\A(?:II\*\x00|MM\x00\*)")),
    (BMP, re.compile(rb"\ABM.{12}(?:\x0c|\x28|\x38|\x40|\x6c|\x7c)\x00\x00\x00", re.DOTALL)),
    (PDF, re.compile(rb"\A%PDF-\d\.\d")),
)
# Markup a browser (or anything else that sniffs) could take for a page or a script.
_MARKUP = re.compile(rb"<(?:!doctype\s+html|html|head|body|script|svg|iframe|object|embed)[\s>/]", re.IGNORECASE)
_PDF_MARK = b"%PDF-"
_ZIP_LOCAL_HEADER = b"PK\x03\x04"
_ZIP_END_RECORD = b"PK\x05\x06"


@dataclass(frozen=True)
class ContentInfo:
    kind: Kind
    width: int
    height: int
    page_count: int


def sniff_prefix(prefix: bytes) -> Kind:
    """The format the first bytes announce; refuses unknown and ambiguous heads."""
    matches = [kind for kind, pattern in _SIGNATURES if pattern.match(prefix)]
    if not matches:
        raise rejections.unsupported_type()
    kind = matches[0]
    head = prefix[:PREFIX_SIZE]
    if _MARKUP.search(head) or _ZIP_LOCAL_HEADER in head:
        raise rejections.ambiguous_content()
    # PDF readers accept a header anywhere in the first KiB, so an image carrying one there is
    # also a PDF: refuse rather than guess which reader a consumer will use.
    if kind is not PDF and _PDF_MARK in head:
        raise rejections.ambiguous_content()
    return kind


def check_tail(kind: Kind, tail: bytes) -> None:
    """Refuse archives appended to a file (read by ZIP tools from the end)."""
    if _ZIP_END_RECORD in tail:
        raise rejections.ambiguous_content()


def _png_has_trailing_data(reader: BinaryIO, size: int) -> bool:
    """Walk the chunk list: True if bytes follow IEND (room for a second format)."""
    position = 8
    while position + 12 <= size:
        reader.seek(position)
        header = reader.read(8)
        if len(header) < 8:
            return False
        length, chunk_type = struct.unpack(">I4s", header)
        position += 12 + length
        if chunk_type == b"IEND":
            return position < size
    return False


def _inspect_image(kind: Kind, reader: BinaryIO, size: int) -> ContentInfo:
    limit = settings.MAX_IMAGE_PIXELS
    try:
        image = Image.open(reader, formats=[kind.name])
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error):
        raise rejections.unreadable_image() from None
    except Image.DecompressionBombError:
        raise rejections.too_many_pixels(0, limit) from None
    with image:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise rejections.unreadable_image()
        if width * height > limit:
            raise rejections.too_many_pixels(width * height, limit)
        if kind is JPEG:
            # DCT scaling: every scan is still decoded (truncation is noticed) but into far
            # fewer pixels, so checking a 40-megapixel photo costs a fraction of its full size.
            image.draft("RGB", (min(width, 1024), min(height, 1024)))
        try:
            image.load()  # the first frame only, for GIF/TIFF/WebP animations
        except Image.DecompressionBombError:
            raise rejections.too_many_pixels(width * height, limit) from None
        except (OSError, ValueError, SyntaxError, struct.error, EOFError, MemoryError):
            raise rejections.unreadable_image() from None
    if kind is PNG and _png_has_trailing_data(reader, size):
        raise rejections.ambiguous_content()
    return ContentInfo(kind=kind, width=width, height=height, page_count=1)


def _inspect_pdf(reader: BinaryIO) -> ContentInfo:
    limit = settings.MAX_PDF_PAGES
    with PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(reader)
        except pdfium.PdfiumError:
            raise rejections.unreadable_pdf() from None
        try:
            pages = len(document)
            if pages < 1:
                raise rejections.unreadable_pdf()
            if pages > limit:
                raise rejections.too_many_pages(pages, limit)
            page = document[0]
            try:
                width, height = (round(value) for value in page.get_size())
                # Render the first page small: proof that pdfium can really draw it.
                page.render(scale=min(1.0, 256 / max(width, height, 1))).close()
            finally:
                page.close()
        except pdfium.PdfiumError:
            raise rejections.unreadable_pdf() from None
        finally:
            document.close()
    return ContentInfo(kind=PDF, width=width, height=height, page_count=pages)


def inspect_content(kind: Kind, reader: BinaryIO, size: int) -> ContentInfo:
    """Decode the whole file for real; raise AssetRejected if it is not what its head claims."""
    reader.seek(0)
    if kind is PDF:
        return _inspect_pdf(reader)
    return _inspect_image(kind, reader, size)


def _rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB") if image.mode != "RGB" else image


def page_images(kind: Kind, reader: BinaryIO, *, max_pages: int, max_side: int) -> list[Image.Image]:
    """RGB images of the first ``max_pages`` pages (an image file is one page), longest side
    at most ``max_side``: what the model and the thumbnails consume. Nothing touches disk."""
    reader.seek(0)
    if kind is not PDF:
        with Image.open(reader, formats=[kind.name]) as image:
            if kind is JPEG:
                image.draft("RGB", (max_side, max_side))
            image.load()
            frame = _rgb(image)
            frame.thumbnail((max_side, max_side))
            return [frame.copy()]
    images = []
    with PDFIUM_LOCK:
        document = pdfium.PdfDocument(reader)
        try:
            for index in range(min(max_pages, len(document))):
                page = document[index]
                try:
                    width, height = page.get_size()
                    bitmap = page.render(scale=max_side / max(width, height, 1))
                    try:
                        images.append(_rgb(bitmap.to_pil()).copy())
                    finally:
                        bitmap.close()
                finally:
                    page.close()
        finally:
            document.close()
    return images
