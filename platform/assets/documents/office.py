"""Reading DOCX, XLSX and PPTX files: their text, rendered into page images the model can take,
with every rendered line's box, and their embedded images as further pages.

The package is checked first (``ooxml.package_check``: macros, encryption, archive limits, unsafe
XML, external relationships); then the document library reads it — python-docx (body paragraphs
and tables, in order), openpyxl (``read_only``, ``data_only``: each sheet's rows, at most
``OFFICE_MAX_CELLS`` non-empty cells in all), python-pptx (each slide's text frames and tables,
group shapes included). A workbook may make openpyxl walk empty rows and cells (a cell declared
at XFD1048576, a row numbered in the billions): at most ``SCAN_FACTOR`` × ``OFFICE_MAX_CELLS``
positions are walked, then the document is refused as too long. Nothing in the file runs: these
libraries only parse XML.

The text is laid out on A4-proportioned pages of ``PAGE_WIDTH`` × ``PAGE_HEIGHT`` pixels (the
size ``assets.reading.asset_page_images`` returns at its default ``max_side``), wrapped to the
width in ``FONT_PATH``, at most ``MAX_PDF_PAGES`` pages in all (a longer document is refused);
each line keeps its box, so the text layer of an Office file has exact boxes
(``TextSource.OFFICE``). Embedded raster images (``*/media/*``: JPEG, PNG, BMP, WebP, TIFF, GIF)
follow the text as pages, at most ``OFFICE_MAX_IMAGES``, each checked like an uploaded image (a
damaged or ambiguous one refuses the document); vector pictures (EMF, WMF, SVG) are skipped.
Layout is deterministic: the upload, the model and the text layer see the same pages.

**Cache**: a stored file is re-read for every page view (thumbnail, ``?page=N``, the extraction
page, chat), so the read and laid-out document (``_laid_out``: text lines with their boxes, the
checked embedded images) is kept in a small in-process LRU of ``OFFICE_PAGE_CACHE_DOCUMENTS``
documents (default 8; 0 turns it off), each at most ``OFFICE_PAGE_CACHE_MB`` (default 32) of
image bytes, for at most ``OFFICE_PAGE_CACHE_SECONDS`` (default 300; 0 keeps nothing): a
sweeper thread drops each entry when its time is up, used or not. The key is the stored
file's identity, which its reader carries (``DecryptingReader.identity``: the department and
the blob's random name; a blob's bytes never change), and the limits that shape the layout, so
a file is served only its own pages, never another's — not even another department's upload of
the same bytes —, and a changed limit reads it again. Deleting a file's last reference forgets
its entry in this process (``cache_forget``, once the deletion committed; a view reading it
meanwhile does not store it again); other processes drop theirs within the time bound. A
reader without an identity (the upload's own check, ``office_inspect``) is never cached.
Thread-safe.
"""

from __future__ import annotations

import io
import re
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from PIL import Image, ImageDraw, ImageFont

from assets import content, rejections
from assets.documents.lru import lru_put
from assets.documents.ooxml import PackageReader, package_check
from assets.documents.pages import DocumentText, Line, PageText, TextSource

PAGE_WIDTH = 1131
PAGE_HEIGHT = 1600
MARGIN = 90
FONT_SIZE = 22
LINE_HEIGHT = 32
FONT_PATH = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
LINES_PER_PAGE = (PAGE_HEIGHT - 2 * MARGIN) // LINE_HEIGHT
MAX_LINE_CHARS = 400  # more than a line ever holds (the narrowest glyphs are about 5 px wide)
SCAN_FACTOR = 10  # cell positions (empty ones included) read per allowed non-empty cell
_MEDIA_FOLDERS = {content.DOCX: "word/media/", content.XLSX: "xl/media/", content.PPTX: "ppt/media/"}
# A run of characters that wraps as one word; every other character (CJK above all) wraps alone.
_TOKEN = re.compile(r"\s+|[^\s\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]+|.")
_NUMBER = re.compile(r"(\d+)")


def max_cells() -> int:
    return getattr(settings, "OFFICE_MAX_CELLS", 100_000)


def max_images() -> int:
    return getattr(settings, "OFFICE_MAX_IMAGES", 20)


@dataclass(frozen=True)
class OfficeContent:
    kind: content.Kind
    paragraphs: tuple[str, ...]  # the text in reading order, one entry per paragraph/row
    images: tuple[tuple[content.Kind, bytes], ...]  # embedded raster images, checked


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if FONT_PATH.exists():
        return ImageFont.truetype(str(FONT_PATH), FONT_SIZE)
    return ImageFont.load_default(size=FONT_SIZE)


# --- reading ----------------------------------------------------------------------------------


def _cell_text(value) -> str:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value).strip()


def _docx_paragraphs(reader: BinaryIO) -> list[str]:
    import docx

    document = docx.Document(reader)
    paragraphs: list[str] = []
    for item in document.iter_inner_content():
        if isinstance(item, docx.table.Table):
            for row in item.rows:
                seen, cells = set(), []
                for cell in row.cells:
                    if id(cell._tc) not in seen:  # a merged cell is listed once per grid column
                        seen.add(id(cell._tc))
                        cells.append(" ".join(cell.text.split()))
                paragraphs.append(" | ".join(cells))
        else:
            paragraphs.append(item.text)
    return paragraphs


def _xlsx_paragraphs(reader: BinaryIO) -> list[str]:
    import openpyxl

    # Bounds on what is read: the non-empty cells, and every position iterated (an empty row
    # counts one, a row its length up to its last cell): a sheet can declare a cell at XFD1048576
    # or a row numbered in the billions, and openpyxl yields the empty rows and cells in between.
    limit, cells, scanned = max_cells(), 0, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        workbook = openpyxl.load_workbook(reader, read_only=True, data_only=True, keep_links=False)
        try:
            paragraphs: list[str] = []
            for sheet in workbook.worksheets:
                if not hasattr(sheet, "iter_rows"):
                    continue
                paragraphs.append(f"[{sheet.title}]")
                sheet.reset_dimensions()  # rows as stored, not padded to a declared dimension
                for row in sheet.iter_rows(values_only=True):
                    scanned += len(row) + 1
                    values = [_cell_text(value) for value in row]
                    values = [value for value in values if value]
                    cells += len(values)
                    if cells > limit or scanned > SCAN_FACTOR * limit:
                        raise rejections.office_too_long(settings.MAX_PDF_PAGES)
                    if values:
                        paragraphs.append(" | ".join(values))
        finally:
            workbook.close()
    return paragraphs


def _pptx_shape_paragraphs(shape) -> list[str]:
    paragraphs: list[str] = []
    if getattr(shape, "shape_type", None) is not None and hasattr(shape, "shapes"):  # a group
        for inner in shape.shapes:
            paragraphs.extend(_pptx_shape_paragraphs(inner))
        return paragraphs
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        paragraphs.extend(paragraph.text for paragraph in shape.text_frame.paragraphs)
    if getattr(shape, "has_table", False) and shape.has_table:
        for row in shape.table.rows:
            paragraphs.append(" | ".join(" ".join(cell.text.split()) for cell in row.cells))
    return paragraphs


def _pptx_paragraphs(reader: BinaryIO) -> list[str]:
    import pptx

    presentation = pptx.Presentation(reader)
    paragraphs: list[str] = []
    for number, slide in enumerate(presentation.slides, start=1):
        if number > 1:
            paragraphs.append("")
        paragraphs.append(f"[{number}]")
        for shape in slide.shapes:
            paragraphs.extend(_pptx_shape_paragraphs(shape))
    return paragraphs


def _natural(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in _NUMBER.split(name)]


def _embedded_images(kind: content.Kind, package: PackageReader, *, check: bool) -> list[tuple[content.Kind, bytes]]:
    folder = _MEDIA_FOLDERS[kind]
    images: list[tuple[content.Kind, bytes]] = []
    for name in sorted((name for name in package.names() if name.startswith(folder)), key=_natural):
        data = package.read(name)
        try:
            image_kind = content.sniff_prefix(data[: content.PREFIX_SIZE])
        except rejections.AssetRejected as refusal:
            if refusal.code == "unsupported_type":
                continue  # a vector picture (EMF/WMF/SVG) or another non-raster part: no page
            raise
        if image_kind not in content.IMAGE_KINDS:
            raise rejections.ambiguous_content()  # a PDF, Office file or DICOM posing as a picture
        if len(images) >= max_images():
            raise rejections.office_images(max_images())
        content.check_tail(image_kind, data[-content.TAIL_SIZE :])
        if check:  # at upload; a stored file's blob is authenticated, its pages decode when used
            content.inspect_content(image_kind, io.BytesIO(data), len(data))  # like an uploaded image
        images.append((image_kind, data))
    return images


def office_read(reader: BinaryIO, size: int, *, check_images: bool = False) -> OfficeContent:
    """The checked package's text and images (AssetRejected for anything refused); every
    embedded image decoded completely too with ``check_images`` (the upload's check)."""
    kind, package = package_check(reader, size)
    readers = {content.DOCX: _docx_paragraphs, content.XLSX: _xlsx_paragraphs, content.PPTX: _pptx_paragraphs}
    reader.seek(0)
    try:
        paragraphs = readers[kind](reader)
    except rejections.AssetRejected:
        raise
    except Exception as error:
        if isinstance(error, MemoryError):
            raise
        raise rejections.office_unreadable() from None
    images = _embedded_images(kind, package, check=check_images)
    return OfficeContent(kind=kind, paragraphs=tuple(paragraphs), images=tuple(images))


# --- layout and rendering ---------------------------------------------------------------------


def _fit(text: str, width: float) -> int:
    """How many leading characters of ``text`` fit in ``width`` (at least one)."""
    font = _font()
    low, high = 1, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if font.getlength(text[:middle]) <= width:
            low = middle
        else:
            high = middle - 1
    return low


def wrap(text: str, width: float) -> Iterator[str]:
    """``text`` broken into lines no wider than ``width`` pixels: between words, or between
    characters for CJK and for a word longer than a line. A generator, and no measurement is of
    more than ``MAX_LINE_CHARS`` characters: a paragraph of a million characters without a space
    costs its lines, and the layout stops at the page limit."""
    font = _font()
    for raw in text.replace("\t", "    ").split("\n"):
        current = ""
        for match in _TOKEN.finditer(raw):
            token = match.group()
            if len(current) + len(token) <= MAX_LINE_CHARS and font.getlength(current + token) <= width:
                current += token
                continue
            if current.strip():
                yield current.rstrip()
            current = "" if token.isspace() else token
            start = 0
            while start < len(current):
                window = current[start : start + MAX_LINE_CHARS + 1]
                if len(window) <= MAX_LINE_CHARS and font.getlength(window) <= width:
                    break
                cut = _fit(window[:MAX_LINE_CHARS], width)
                yield current[start : start + cut]
                start += cut
            current = current[start:]
        yield current.rstrip()


def layout(paragraphs: tuple[str, ...] | list[str]) -> list[list[Line]]:
    """Pages of positioned lines (empty lines only take room; at least one page)."""
    limit = settings.MAX_PDF_PAGES
    font = _font()
    width = PAGE_WIDTH - 2 * MARGIN
    pages: list[list[Line]] = [[]]
    row = 0
    previous_blank = True
    for paragraph in paragraphs:
        for text in wrap(paragraph, width):
            blank = not text.strip()
            if blank and previous_blank:
                continue  # runs of empty lines collapse into one
            previous_blank = blank
            if row == LINES_PER_PAGE:
                if blank:
                    continue
                pages.append([])
                row = 0
                if len(pages) > limit:
                    raise rejections.office_too_long(limit)
            top = MARGIN + row * LINE_HEIGHT
            row += 1
            if not blank:
                box = (float(MARGIN), float(top), float(MARGIN + font.getlength(text)), float(top + FONT_SIZE + 6))
                pages[-1].append(Line(text=text, box=box, confidence=1.0))
    return pages


def _render(lines: list[Line]) -> Image.Image:
    image = Image.new("RGB", (PAGE_WIDTH, PAGE_HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    font = _font()
    for line in lines:
        draw.text((line.box[0], line.box[1]), line.text, fill="black", font=font)
    return image


def _page_count(document: OfficeContent) -> tuple[list[list[Line]], int]:
    pages = layout(document.paragraphs)
    total = len(pages) + len(document.images)
    if total > settings.MAX_PDF_PAGES:
        raise rejections.office_too_long(settings.MAX_PDF_PAGES)
    return pages, total


@dataclass(frozen=True)
class _LaidOut:
    document: OfficeContent
    pages: tuple[tuple[Line, ...], ...]
    total: int


_CACHE: OrderedDict[tuple, tuple[float, _LaidOut]] = OrderedDict()  # key: (cached at, laid out)
_CACHE_LOCK = threading.Lock()
_FORGOTTEN: dict[str, float] = {}  # blobs whose file was deleted: name → when (kept for the bound)
_sweeper: threading.Thread | None = None
_wake = threading.Event()  # set when an entry is stored: the sweeper computes its wait again


def cache_documents() -> int:
    return getattr(settings, "OFFICE_PAGE_CACHE_DOCUMENTS", 8)


def cache_clear() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
        _FORGOTTEN.clear()


def cache_seconds() -> float:
    return getattr(settings, "OFFICE_PAGE_CACHE_SECONDS", 300)


def cache_forget(storage_name: str) -> None:
    """Drop every entry laid out from the blob ``storage_name`` (its file was deleted), and keep
    a view that was reading it meanwhile from storing it again."""
    with _CACHE_LOCK:
        for key in [key for key in _CACHE if key[0][1] == storage_name]:
            del _CACHE[key]
        _FORGOTTEN[storage_name] = time.monotonic()


def _expire(now: float) -> None:
    """Drop the entries (and forgotten names) older than the time bound. The caller holds the lock."""
    bound = cache_seconds()
    for key in [key for key, (cached_at, _laid) in _CACHE.items() if now - cached_at >= bound]:
        del _CACHE[key]
    for name in [name for name, forgotten_at in _FORGOTTEN.items() if now - forgotten_at >= bound]:
        del _FORGOTTEN[name]


def _sweep() -> None:
    """The sweeper thread: wakes when the oldest entry's time is up and drops what expired, used
    or not, so a document's plaintext does not outlive the bound on a quiet worker; it ends once
    the cache is empty (the next store starts it again)."""
    global _sweeper
    while True:
        with _CACHE_LOCK:
            now = time.monotonic()
            _expire(now)
            if not _CACHE:
                _sweeper = None
                return
            wait = min(cached_at for cached_at, _laid in _CACHE.values()) + cache_seconds() - now
        _wake.wait(max(wait, 0.05))
        _wake.clear()


def _sweeper_ensure() -> None:
    """Start the sweeper if it is not running, else have it look again (the bound may have
    changed). The caller holds the lock."""
    global _sweeper
    _wake.set()
    if _sweeper is None:
        _sweeper = threading.Thread(target=_sweep, name="office-page-cache-sweeper", daemon=True)
        _sweeper.start()


def _cache_key(reader: BinaryIO) -> tuple | None:
    identity = getattr(reader, "identity", None)
    if identity is None:
        return None
    return (identity, settings.MAX_PDF_PAGES, max_cells(), max_images())


def _laid_out(reader: BinaryIO) -> _LaidOut:
    """The stored file read and laid out (``office_read`` + the layout), from the cache when
    the same stored file was laid out under the same limits within the time bound;
    AssetRejected is never cached."""
    slots = cache_documents()
    key = _cache_key(reader) if slots > 0 else None
    now = time.monotonic()
    if key is not None:
        with _CACHE_LOCK:
            _expire(now)
            hit = _CACHE.get(key)
            if hit is not None:
                _CACHE.move_to_end(key)
                return hit[1]
    reader.seek(0)
    size = reader.seek(0, io.SEEK_END)
    document = office_read(reader, size)
    pages, total = _page_count(document)
    laid = _LaidOut(document=document, pages=tuple(tuple(lines) for lines in pages), total=total)
    image_bytes = sum(len(data) for _kind, data in document.images)
    cacheable = image_bytes <= getattr(settings, "OFFICE_PAGE_CACHE_MB", 32) * 1024 * 1024 and cache_seconds() > 0
    if key is not None and cacheable:
        with _CACHE_LOCK:
            if key[0][1] not in _FORGOTTEN:  # deleted while this view was reading it
                lru_put(_CACHE, key, (now, laid), slots)
                _sweeper_ensure()
    return laid


def office_inspect(reader: BinaryIO, size: int) -> content.ContentInfo:
    """The upload's complete check: package, document, every embedded image, the layout."""
    document = office_read(reader, size, check_images=True)
    _pages, total = _page_count(document)
    return content.ContentInfo(kind=document.kind, width=PAGE_WIDTH, height=PAGE_HEIGHT, page_count=total)


def office_page_images(reader: BinaryIO, *, max_pages: int, max_side: int) -> list[Image.Image]:
    """The first ``max_pages`` pages: the text pages, then the embedded images, each at most
    ``max_side`` on its longer side. A file that no longer reads raises PageUnreadable(1)."""
    return office_pages_at(reader, range(1, max_pages + 1), max_side=max_side, clip=True)


def office_pages_at(reader: BinaryIO, numbers, *, max_side: int, clip: bool = False) -> list[Image.Image]:
    """The pages ``numbers`` (1-based, in the order given) rendered; only those are drawn or
    decoded. A number beyond the document raises PageUnreadable (left out with ``clip``)."""
    try:
        laid = _laid_out(reader)
    except rejections.AssetRejected:
        raise content.PageUnreadable(1) from None
    document, pages, total = laid.document, laid.pages, laid.total
    images: list[Image.Image] = []
    for number in numbers:
        if not 1 <= number <= total:
            if clip:
                continue
            raise content.PageUnreadable(number)
        if number <= len(pages):
            page = _render(list(pages[number - 1]))
            if max(page.size) > max_side:
                page.thumbnail((max_side, max_side))
            images.append(page)
            continue
        kind, data = document.images[number - len(pages) - 1]
        try:
            images.extend(content.page_images(kind, io.BytesIO(data), max_pages=1, max_side=max_side))
        except content.PageUnreadable:
            raise content.PageUnreadable(number) from None
    return images


def office_document_text(reader: BinaryIO) -> DocumentText:
    """The text layer of an Office file: every text page's lines with their boxes in the
    default page image's pixels (``TextSource.OFFICE``), then one page without text per
    embedded image (its size as ``asset_page_images`` returns it by default)."""
    laid = _laid_out(reader)
    document, pages = laid.document, laid.pages
    result = [
        PageText(
            number=number,
            lines=tuple(lines),
            source=TextSource.OFFICE,
            width=PAGE_WIDTH,
            height=PAGE_HEIGHT,
        )
        for number, lines in enumerate(pages, start=1)
    ]
    for kind, data in document.images:
        try:
            with Image.open(io.BytesIO(data), formats=[kind.name]) as image:
                width, height = image.size
        except Exception as error:
            if not content._is_damage(error):  # the one definition of "the file is damaged"
                raise
            result.append(PageText(number=len(result) + 1, usable=False))
            continue
        scale = min(1.0, PAGE_HEIGHT / max(width, height, 1))
        result.append(
            PageText(
                number=len(result) + 1,
                source=TextSource.NONE,
                width=max(1, round(width * scale)),
                height=max(1, round(height * scale)),
            )
        )
    return DocumentText(pages=tuple(result))


def office_text_extractor(reader: BinaryIO, *, asset, limits) -> Iterator[PageText]:
    """The text-layer job's extractor (``text_layer.TEXT_EXTRACTORS``): the text pages exactly
    as laid out (no OCR needed), then each embedded image OCR'd within the job's limits."""
    from assets.documents.text_layer import TextLayerRefused

    try:
        laid = _laid_out(reader)
    except rejections.AssetRejected:
        raise TextLayerRefused("unreadable") from None
    document, pages, total = laid.document, laid.pages, laid.total
    if total > limits.max_pages:
        raise TextLayerRefused("too_many_pages", pages=total, limit=limits.max_pages)
    for number, lines in enumerate(pages, start=1):
        yield PageText(number, tuple(lines), TextSource.OFFICE, PAGE_WIDTH, PAGE_HEIGHT)
    for index, (kind, data) in enumerate(document.images):
        number = len(pages) + index + 1
        try:
            (image,) = content.page_images(kind, io.BytesIO(data), max_pages=1, max_side=limits.max_side)
        except content.PageUnreadable:
            yield PageText(number=number, usable=False)
            continue
        lines = limits.ocr(image, page=number)
        yield PageText(number, lines, TextSource.OCR if lines else TextSource.NONE, image.width, image.height)
