"""Deciding what a file is by its content, and decoding it: never by name or client MIME type.

Two steps. ``sniff_prefix`` looks at the first bytes while the upload is still streaming (so a
plainly wrong file is refused before it is stored) and refuses ambiguous content: a file whose
head matches one format but also carries another's signature (``%PDF-`` inside an image's
first KiB, HTML/SVG/script markup, a ZIP header) — the usual polyglot tricks. ``inspect_content``
then decodes the whole file for real, from the encrypted blob through a decrypting reader
(Pillow for images, pdfium for PDF), enforcing the pixel and page limits before any pixel is
allocated. A tail check catches ZIP archives appended to an image (JPEG+JAR and the like) and
data hidden after a PNG's IEND chunk.

"Decodes" means completely: every frame of an image (all its frames' pixels together within
``MAX_IMAGE_PIXELS``), a PNG's every chunk with its CRC up to IEND, a JPEG's every segment and
scan up to its end-of-image marker, a GIF's every block up to its trailer, and each PDF page
the model uses today (``MODEL_PAGES_PER_FILE``) rendered. A truncated or damaged file is refused
at upload instead of failing when it is used.

Every decode (upload checks, model inputs, thumbnails) takes one of the process's decode slots
(``decode_slot``, ``IMAGE_DECODE_CONCURRENCY``), so a burst of requests cannot decode more
images at once than the machine has room for. ``decode_cost`` / ``probe_cost`` say what a decode
will cost from headers alone, for the budget of a model request (``inference.image_budget``).
"""

from __future__ import annotations

import contextlib
import re
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import pypdfium2 as pdfium
from django.conf import settings
from PIL import Image

from assets import rejections

# How many leading / trailing bytes the stager keeps (in memory only) for the checks below.
PREFIX_SIZE = 1024
TAIL_SIZE = 64 * 1024 + 22  # a ZIP end-of-central-directory record lies within this of the end

# pdfium is not thread-safe: every call into it goes through this lock.
PDFIUM_LOCK = threading.RLock()
# The pages of a PDF that the model sees today (chat, /v1, extraction): each one is rendered at
# upload, so a PDF that was accepted can be used.
MODEL_PAGES_PER_FILE = 4
# TIFF field types and their sizes in bytes (classic TIFF, the only one sniff_prefix accepts).
_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
# Strip and tile offsets, each with the tag of its byte counts.
_TIFF_DATA_TAGS = {273: 279, 324: 325}
_TIFF_MAX_IFDS = 10_000


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
# Documents departments have (read by assets.documents): Office Open XML and DICOM Part 10.
DOCX = Kind("DOCX", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx")
XLSX = Kind("XLSX", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx")
PPTX = Kind("PPTX", "application/vnd.openxmlformats-officedocument.presentationml.presentation", "pptx")
DICOM = Kind("DICOM", "application/dicom", "dcm")
# What a ZIP head announces while streaming: which Office type it is (or none) is decided by
# ``inspect_content`` from its [Content_Types].xml; never a stored type.
ZIP = Kind("ZIP", "application/zip", "zip")
OFFICE_KINDS = (DOCX, XLSX, PPTX)
KINDS = {kind.mime: kind for kind in (JPEG, PNG, BMP, WEBP, TIFF, GIF, PDF, DOCX, XLSX, PPTX, DICOM)}
IMAGE_KINDS = (JPEG, PNG, BMP, WEBP, TIFF, GIF)

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
# The Compound File Binary container: legacy .doc/.xls/.ppt and every password-protected OOXML file.
_CFB_HEADER = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_DICOM_MAGIC_AT = 128  # a DICOM Part 10 file: a 128-byte preamble, then "DICM"


@dataclass(frozen=True)
class ContentInfo:
    kind: Kind
    width: int
    height: int
    page_count: int


def _is_damage(error: BaseException) -> bool:
    """Whether an exception out of a decoder means "this file is damaged". Pillow and pdfium
    answer a crafted file with all sorts of exceptions (OSError, SyntaxError, struct.error, even
    TypeError or KeyError); only our own refusals, running out of memory (transient) and a blob
    that fails its integrity check (not the file's content) mean something else."""
    from assets.chunk_format import BlobIntegrityError

    return isinstance(error, Exception) and not isinstance(
        error, MemoryError | rejections.AssetRejected | DecodeBusy | BlobIntegrityError
    )


class DecodeBusy(Exception):
    """Every decode slot of the process stayed taken for ``IMAGE_DECODE_WAIT_SECONDS``."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the server is busy decoding images; retry after {retry_after} s")
        self.retry_after = retry_after


class PageUnreadable(Exception):
    """A page (1-based; an image file is page 1) that failed to decode when it was used."""

    def __init__(self, page: int) -> None:
        super().__init__(f"page {page} could not be decoded")
        self.page = page


@dataclass(frozen=True)
class DecodeCost:
    """What decoding a file for the model costs: images it yields and pixels it decodes."""

    images: int
    pixels: int


_slots_guard = threading.Lock()
_slots: tuple[int, threading.BoundedSemaphore] | None = None
_holding = threading.local()


def _decode_semaphore() -> threading.BoundedSemaphore:
    global _slots
    size = settings.IMAGE_DECODE_CONCURRENCY
    with _slots_guard:
        if _slots is None or _slots[0] != size:
            _slots = (size, threading.BoundedSemaphore(size))
        return _slots[1]


@contextlib.contextmanager
def decode_slot() -> Iterator[None]:
    """Hold one of the process's decode slots (re-entrant within a thread); raise DecodeBusy
    when none frees up in time."""
    if getattr(_holding, "depth", 0):
        _holding.depth += 1
        try:
            yield
        finally:
            _holding.depth -= 1
        return
    semaphore = _decode_semaphore()
    wait = settings.IMAGE_DECODE_WAIT_SECONDS
    if not semaphore.acquire(timeout=wait):
        raise DecodeBusy(retry_after=max(1, min(wait, 30)))
    _holding.depth = 1
    try:
        yield
    finally:
        _holding.depth = 0
        semaphore.release()


def decode_cost(kind: Kind, *, width: int, height: int, pages: int, max_pages: int, max_side: int) -> DecodeCost:
    """The cost of ``page_images`` for a file whose dimensions (or page count) are known: an image
    decodes its own pixels (its first frame), a PDF page is rendered at most ``max_side`` square."""
    if kind is PDF or kind in OFFICE_KINDS:
        used = max(0, min(pages, max_pages))
        return DecodeCost(images=used, pixels=used * max_side * max_side)
    if kind is DICOM:  # each frame decodes its own pixels
        used = max(0, min(pages, max_pages))
        return DecodeCost(images=used, pixels=used * max(0, width) * max(0, height))
    return DecodeCost(images=1, pixels=max(0, width) * max(0, height))


def probe_cost(kind: Kind, reader: BinaryIO, *, max_pages: int, max_side: int) -> DecodeCost:
    """``decode_cost`` read from the file's header, without decoding a pixel: the dimensions and
    frame count of an image (every frame is decoded when it is checked), a PDF's page count.
    A header that does not parse raises AssetRejected. Office files and DICOM are only taken as
    stored files (inline, a DICOM would reach the model without its de-identification)."""
    if kind not in IMAGE_KINDS and kind is not PDF:
        raise rejections.unsupported_type()
    reader.seek(0)
    if kind is PDF:
        with pdf_opened(reader, rejections.unreadable_pdf) as document:
            pages = len(document)
        return decode_cost(kind, width=0, height=0, pages=pages, max_pages=max_pages, max_side=max_side)
    try:
        with Image.open(reader, formats=[kind.name]) as image:
            width, height = image.size
            frames = getattr(image, "n_frames", 1)
    except Image.DecompressionBombError:
        raise rejections.too_many_pixels(0, settings.MAX_IMAGE_PIXELS) from None
    except Exception as error:
        if not _is_damage(error):
            raise
        raise rejections.unreadable_image() from None
    cost = decode_cost(kind, width=width, height=height, pages=1, max_pages=max_pages, max_side=max_side)
    return DecodeCost(images=1, pixels=cost.pixels * max(1, frames))


def sniff_prefix(prefix: bytes) -> Kind:
    """The format the first bytes announce; refuses unknown and ambiguous heads.

    A ZIP local header at offset 0 announces a possible Office file (``ZIP``: decided later by
    its content); anywhere else in the first KiB it stays a polyglot. A DICOM file's preamble
    may hold anything, so one that is also another format's head is refused as ambiguous."""
    if prefix.startswith(_CFB_HEADER):
        raise rejections.office_encrypted()
    matches = [kind for kind, pattern in _SIGNATURES if pattern.match(prefix)]
    if prefix[_DICOM_MAGIC_AT : _DICOM_MAGIC_AT + 4] == b"DICM":
        if matches:
            raise rejections.ambiguous_content()
        matches = [DICOM]
    elif prefix.startswith(_ZIP_LOCAL_HEADER):
        matches = [ZIP]
    if not matches:
        raise rejections.unsupported_type()
    kind = matches[0]
    head = prefix[:PREFIX_SIZE]
    if kind is not ZIP and (_MARKUP.search(head) or _ZIP_LOCAL_HEADER in head):
        raise rejections.ambiguous_content()  # (a ZIP's head is checked once it is known to be Office)
    # PDF readers accept a header anywhere in the first KiB, so an image carrying one there is
    # also a PDF: refuse rather than guess which reader a consumer will use.
    if kind is not PDF and _PDF_MARK in head:
        raise rejections.ambiguous_content()
    return kind


def markup_in(head: bytes) -> bool:
    """Whether the first KiB holds page or script markup (a browser could sniff it as HTML)."""
    return bool(_MARKUP.search(head[:PREFIX_SIZE]))


def check_tail(kind: Kind, tail: bytes) -> None:
    """Refuse archives appended to a file (read by ZIP tools from the end). An Office file is a
    ZIP archive: its end record must be the file's very end (nothing appended after it)."""
    if kind is ZIP:
        end = tail.rfind(_ZIP_END_RECORD)
        if end < 0 or len(tail) - end < 22:
            raise rejections.office_unreadable()
        (comment_length,) = struct.unpack("<H", tail[end + 20 : end + 22])
        if end + 22 + comment_length != len(tail):
            raise rejections.ambiguous_content()
        return
    if _ZIP_END_RECORD in tail:
        raise rejections.ambiguous_content()


class _Walker:
    """Sequential reads over a seekable reader through a 64 KiB window: the structure walks below
    read a few bytes at a time, and the reader may be a decrypting one."""

    def __init__(self, reader: BinaryIO, position: int = 0) -> None:
        self.reader = reader
        self.position = position
        self._start = position
        self._window = b""

    def read(self, count: int) -> bytes:
        offset = self.position - self._start
        if offset < 0 or offset + count > len(self._window):
            self.reader.seek(self.position)
            self._start, self._window, offset = self.position, self.reader.read(max(count, 64 * 1024)), 0
        data = self._window[offset : offset + count]
        self.position += len(data)
        return data

    def skip(self, count: int) -> None:
        self.position += count


def _png_check_chunks(reader: BinaryIO, size: int) -> None:
    """Every chunk whole with a matching CRC, up to IEND (Pillow stops reading after the image
    data, so a file cut after it decodes); bytes after IEND are room for a second format."""
    walker = _Walker(reader, 8)
    while True:
        header = walker.read(8)
        if len(header) < 8:
            raise rejections.unreadable_image()  # no IEND: truncated
        length, chunk_type = struct.unpack(">I4s", header)
        if walker.position + length + 4 > size:
            raise rejections.unreadable_image()
        crc = zlib.crc32(chunk_type)
        remaining = length
        while remaining:
            piece = walker.read(min(remaining, 1024 * 1024))
            crc = zlib.crc32(piece, crc)
            remaining -= len(piece)
        if walker.read(4) != struct.pack(">I", crc):
            raise rejections.unreadable_image()
        if chunk_type == b"IEND":
            if walker.position < size:
                raise rejections.ambiguous_content()
            return


def _jpeg_check_markers(reader: BinaryIO, size: int) -> None:
    """Every marker segment whole and every scan's entropy-coded data followed by a marker, up to
    the end-of-image marker (libjpeg can finish the last scan without reading it, so Pillow
    accepts a JPEG cut after its last scan). Bytes after EOI are not interpreted (see
    docs/assets.md)."""
    walker = _Walker(reader)
    if walker.read(2) != b"\xff\xd8":
        raise rejections.unreadable_image()
    while True:
        if walker.read(1) != b"\xff":
            raise rejections.unreadable_image()
        marker = walker.read(1)
        while marker == b"\xff":  # fill bytes
            marker = walker.read(1)
        if not marker:
            raise rejections.unreadable_image()
        code = marker[0]
        if code == 0xD9:  # EOI
            return
        if 0xD0 <= code <= 0xD7 or code == 0x01:  # stand-alone markers
            continue
        raw_length = walker.read(2)
        if len(raw_length) < 2 or struct.unpack(">H", raw_length)[0] < 2:
            raise rejections.unreadable_image()
        walker.skip(struct.unpack(">H", raw_length)[0] - 2)
        if walker.position > size:
            raise rejections.unreadable_image()
        if code == 0xDA:  # start of scan: entropy-coded data up to the next real marker
            walker.position = _jpeg_scan_end(reader, walker.position)


def _jpeg_scan_end(reader: BinaryIO, position: int) -> int:
    """Where the entropy-coded data starting at ``position`` ends: the first 0xFF that is neither
    a stuffed 0xFF00, a restart marker nor fill. Raises when the file ends first."""
    while True:
        reader.seek(position)
        window = reader.read(256 * 1024)
        if len(window) < 2:
            raise rejections.unreadable_image()
        index = window.find(b"\xff")
        while 0 <= index < len(window) - 1:
            following = window[index + 1]
            if following != 0x00 and following != 0xFF and not 0xD0 <= following <= 0xD7:
                return position + index
            index = window.find(b"\xff", index + 1)
        position += len(window) - 1  # the last byte again: it may be the 0xFF of a marker


def _gif_check_blocks(reader: BinaryIO, size: int) -> None:
    """Every block and data sub-block present, up to the trailer (Pillow accepts a GIF cut after
    its last image data). Bytes after the trailer are not interpreted (see docs/assets.md)."""
    walker = _Walker(reader)
    screen = walker.read(13)
    if len(screen) < 13:
        raise rejections.unreadable_image()
    if screen[10] & 0x80:
        walker.skip(3 * (2 << (screen[10] & 7)))  # global colour table
    while True:
        block = walker.read(1)
        if block == b";":
            return
        if block == b"!":
            introducer = walker.read(1)  # extension label
        elif block == b",":
            descriptor = walker.read(9)
            if len(descriptor) < 9:
                raise rejections.unreadable_image()
            if descriptor[8] & 0x80:
                walker.skip(3 * (2 << (descriptor[8] & 7)))  # local colour table
            introducer = walker.read(1)  # LZW minimum code size
        else:
            raise rejections.unreadable_image()  # truncated, or not a block at all
        if not introducer:
            raise rejections.unreadable_image()
        while (length := walker.read(1)) != b"\x00":
            if not length:
                raise rejections.unreadable_image()
            walker.skip(length[0])
        if walker.position > size:
            raise rejections.unreadable_image()


def _tiff_check_structure(reader: BinaryIO, size: int) -> None:
    """Every directory (IFD) of the chain, every out-of-line field value and every strip or tile
    inside the file (Pillow reads a TIFF cut inside its last directory with a warning only)."""
    walker = _Walker(reader)
    order = "<" if walker.read(2) == b"II" else ">"
    walker.skip(2)
    (offset,) = struct.unpack(order + "I", walker.read(4))
    seen: set[int] = set()
    while offset:
        if offset in seen or len(seen) >= _TIFF_MAX_IFDS:
            raise rejections.unreadable_image()
        seen.add(offset)
        walker.position = offset
        raw_count = walker.read(2)
        if len(raw_count) < 2 or offset + 2 + 12 * struct.unpack(order + "H", raw_count)[0] + 4 > size:
            raise rejections.unreadable_image()
        entries = [walker.read(12) for _ in range(struct.unpack(order + "H", raw_count)[0])]
        (offset,) = struct.unpack(order + "I", walker.read(4))
        values: dict[int, tuple[int, ...]] = {}
        for entry in entries:
            tag, field_type, count, value = struct.unpack(order + "HHI4s", entry)
            length = _TIFF_TYPE_SIZES.get(field_type, 1) * count
            if length > 4:
                (value_offset,) = struct.unpack(order + "I", value)
                if value_offset + length > size:
                    raise rejections.unreadable_image()
            if tag in _TIFF_DATA_TAGS or tag in _TIFF_DATA_TAGS.values():
                code = {3: "H", 4: "I"}.get(field_type)
                if code is None or count > 1_000_000:
                    raise rejections.unreadable_image()
                if length > 4:
                    end = walker.position
                    walker.position = value_offset
                    value = walker.read(length)
                    walker.position = end
                values[tag] = struct.unpack(f"{order}{count}{code}", value[:length])
        for offsets_tag, counts_tag in _TIFF_DATA_TAGS.items():
            pieces = zip(values.get(offsets_tag, ()), values.get(counts_tag, ()), strict=False)
            if any(start + length > size for start, length in pieces):
                raise rejections.unreadable_image()


def _inspect_image(kind: Kind, reader: BinaryIO, size: int) -> ContentInfo:
    limit = settings.MAX_IMAGE_PIXELS
    try:
        image = Image.open(reader, formats=[kind.name])
    except Image.DecompressionBombError:
        raise rejections.too_many_pixels(0, limit) from None
    except Exception as error:
        if not _is_damage(error):
            raise
        raise rejections.unreadable_image() from None
    with image:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise rejections.unreadable_image()
        if width * height > limit:
            raise rejections.too_many_pixels(width * height, limit)
        decoded = 0
        try:
            # Every frame (GIF/TIFF/WebP/APNG), each checked against the pixel limit from its
            # header before it is decoded: the limit holds for all frames together.
            for frame in range(getattr(image, "n_frames", 1)):
                if frame:
                    image.seek(frame)
                decoded += image.size[0] * image.size[1]
                if decoded > limit:
                    raise rejections.too_many_pixels(decoded, limit)
                if kind is JPEG:
                    # DCT scaling: every scan is still decoded (truncation is noticed) but into
                    # far fewer pixels, so checking a 40-megapixel photo costs a fraction of it.
                    image.draft("RGB", (min(width, 1024), min(height, 1024)))
                image.load()
        except Image.DecompressionBombError:
            raise rejections.too_many_pixels(decoded, limit) from None
        except Exception as error:
            if not _is_damage(error) and not isinstance(error, MemoryError):
                raise
            raise rejections.unreadable_image() from None
    if kind is PNG:
        _png_check_chunks(reader, size)
    elif kind is JPEG:
        _jpeg_check_markers(reader, size)
    elif kind is GIF:
        _gif_check_blocks(reader, size)
    elif kind is TIFF:
        _tiff_check_structure(reader, size)
    return ContentInfo(kind=kind, width=width, height=height, page_count=1)


def _inspect_pdf(reader: BinaryIO) -> ContentInfo:
    limit = settings.MAX_PDF_PAGES
    with pdf_opened(reader, rejections.unreadable_pdf) as document:
        try:
            pages = len(document)
            if pages < 1:
                raise rejections.unreadable_pdf()
            if pages > limit:
                raise rejections.too_many_pages(pages, limit)
            # Every page the model may be shown today is rendered (small): proof that pdfium can
            # really draw it, so that using the file later does not fail on a damaged page.
            for index in range(min(pages, MODEL_PAGES_PER_FILE)):
                try:
                    page = document[index]
                    try:
                        page_width, page_height = (round(value) for value in page.get_size())
                        page.render(scale=min(1.0, 256 / max(page_width, page_height, 1))).close()
                    finally:
                        page.close()
                except Exception as error:
                    if not _is_damage(error):
                        raise
                    raise rejections.unreadable_pdf_page(index + 1) from None
                if index == 0:
                    width, height = page_width, page_height
        except pdfium.PdfiumError:
            raise rejections.unreadable_pdf() from None
    return ContentInfo(kind=PDF, width=width, height=height, page_count=pages)


def inspect_content(kind: Kind, reader: BinaryIO, size: int) -> ContentInfo:
    """Decode the whole file for real; raise AssetRejected if it is not what its head claims."""
    reader.seek(0)
    try:
        with decode_slot():
            if kind is PDF:
                return _inspect_pdf(reader)
            if kind is ZIP or kind in OFFICE_KINDS:
                from assets.documents.office import office_inspect

                return office_inspect(reader, size)
            if kind is DICOM:
                from assets.documents.dicom import dicom_inspect

                return dicom_inspect(reader, size)
            return _inspect_image(kind, reader, size)
    except DecodeBusy as busy:
        raise rejections.busy(busy.retry_after) from None


def _rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB") if image.mode != "RGB" else image


@contextlib.contextmanager
def pdf_opened(reader: BinaryIO, unreadable: Callable[[], Exception]) -> Iterator[pdfium.PdfDocument]:
    """``reader``'s PDF, open under PDFIUM_LOCK for the block (pdfium is not thread-safe) and
    closed after; ``unreadable()`` is raised when it does not parse."""
    with PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(reader)
        except pdfium.PdfiumError:
            raise unreadable() from None
        try:
            yield document
        finally:
            document.close()


def pdf_pages_render(reader: BinaryIO, choose: Callable[[int], Iterable[int]], *, max_side: int) -> list[Image.Image]:
    """RGB images, longest side ``max_side``, of the pages ``choose(page_count)`` names (from 1);
    PageUnreadable(n) for a page that is damaged or that the file does not have."""
    images = []
    with pdf_opened(reader, lambda: PageUnreadable(1)) as document:
        for number in choose(len(document)):
            if not 1 <= number <= len(document):
                raise PageUnreadable(number)
            try:
                page = document[number - 1]
                try:
                    width, height = page.get_size()
                    bitmap = page.render(scale=max_side / max(width, height, 1))
                    try:
                        images.append(_rgb(bitmap.to_pil()).copy())
                    finally:
                        bitmap.close()
                finally:
                    page.close()
            except Exception as error:
                if not _is_damage(error):  # the one definition of "the file is damaged"
                    raise
                raise PageUnreadable(number) from None
    return images


def page_images(kind: Kind, reader: BinaryIO, *, max_pages: int, max_side: int) -> list[Image.Image]:
    """RGB images of the first ``max_pages`` pages (an image file is one page), longest side
    at most ``max_side``: what the model and the thumbnails consume. Nothing touches disk.

    Decodes in one of the process's decode slots (DecodeBusy when none frees up); a page that
    does not decode raises PageUnreadable (page 1 when the file as a whole does not open)."""
    reader.seek(0)
    with decode_slot():
        if kind in OFFICE_KINDS:
            from assets.documents.office import office_page_images

            return office_page_images(reader, max_pages=max_pages, max_side=max_side)
        if kind is DICOM:
            from assets.documents.dicom import dicom_page_images

            return dicom_page_images(reader, max_pages=max_pages, max_side=max_side)
        if kind is not PDF:
            try:
                with Image.open(reader, formats=[kind.name]) as image:
                    if kind is JPEG:
                        image.draft("RGB", (max_side, max_side))
                    image.load()
                    frame = _rgb(image)
                    frame.thumbnail((max_side, max_side))
                    return [frame.copy()]
            except Exception as error:
                if not _is_damage(error):
                    raise
                raise PageUnreadable(1) from None
        return _pdf_page_images(reader, max_pages=max_pages, max_side=max_side)


def page_images_at(kind: Kind, reader: BinaryIO, pages, *, max_side: int) -> list[Image.Image]:
    """RGB images of the given pages (1-based, in that order) of an Office file or a DICOM
    file, only those rendered or decoded: the retrieval's choice for documents that are not
    PDFs. Same contract as ``page_images`` (decode slot, PageUnreadable naming the page)."""
    reader.seek(0)
    with decode_slot():
        if kind in OFFICE_KINDS:
            from assets.documents.office import office_pages_at

            return office_pages_at(reader, pages, max_side=max_side)
        if kind is DICOM:
            from assets.documents.dicom import dicom_pages_at

            return dicom_pages_at(reader, pages, max_side=max_side)
    raise ValueError(f"page_images_at reads Office and DICOM files, not {kind.name}")


def _pdf_page_images(reader: BinaryIO, *, max_pages: int, max_side: int) -> list[Image.Image]:
    return pdf_pages_render(reader, lambda count: range(1, min(max_pages, count) + 1), max_side=max_side)
