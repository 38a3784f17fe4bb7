"""A PDF read page by page for the text layer: each page rendered (the check that it decodes, and
the image OCR reads when the page has no text of its own) and its own text, grouped into lines.

Boxes are converted from PDF points (origin bottom left) to the pixels of the page image that
``assets.reading.asset_page_images`` returns at its default size (longest side
``DEFAULT_MODEL_SIDE``, origin top left): the scale is the one that rendering uses.

pdfium is not thread-safe: every call into it holds ``content.PDFIUM_LOCK``, one page at a time,
so a long document never blocks thumbnails or chat for more than a page's rendering.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import pypdfium2 as pdfium
from PIL import Image

from assets import content
from assets.documents.pages import Line

# A page whose own text has fewer visible characters than this is read by OCR (a scan, or a
# scan with a page number stamped on it).
MIN_TEXT_CHARS = 16


@dataclass
class RenderedPage:
    number: int  # 1-based
    image: Image.Image | None  # None when the page failed to decode
    lines: tuple[Line, ...]  # the PDF's own text (empty when it has none or too little)
    rotated: bool = False


class PdfUnreadable(Exception):
    """The document does not open at all."""


def _group_lines(rects: list[tuple[str, tuple[float, float, float, float]]]) -> list[Line]:
    """Text runs (pdfium's rectangles, in pixels) on the same line and close together joined
    into one line; the rest stay apart (table columns read as separate lines, like OCR's)."""
    lines: list[list] = []
    for text, box in sorted(rects, key=lambda item: (item[1][1], item[1][0])):
        height = max(box[3] - box[1], 1.0)
        for line in lines:
            text0, box0 = line
            overlap = min(box[3], box0[3]) - max(box[1], box0[1])
            gap = box[0] - box0[2]
            if overlap > 0.5 * min(height, box0[3] - box0[1]) and -0.5 * height <= gap <= 1.5 * height:
                joiner = " " if gap > 0.2 * height and not text0.endswith(" ") else ""
                line[0] = text0 + joiner + text
                line[1] = (min(box0[0], box[0]), min(box0[1], box[1]), max(box0[2], box[2]), max(box0[3], box[3]))
                break
        else:
            lines.append([text, box])
    lines.sort(key=lambda line: (line[1][1], line[1][0]))
    return [Line(text=text, box=tuple(round(value, 1) for value in box), confidence=1.0) for text, box in lines]


def _page_text(page, scale: float, page_height: float) -> tuple[Line, ...]:
    textpage = page.get_textpage()
    try:
        rects = []
        for index in range(textpage.count_rects()):
            left, bottom, right, top = textpage.get_rect(index)
            text = " ".join(textpage.get_text_bounded(left, bottom, right, top).split())
            if text:
                box = (left * scale, (page_height - top) * scale, right * scale, (page_height - bottom) * scale)
                rects.append((text, box))
    finally:
        textpage.close()
    lines = _group_lines(rects)
    visible = sum(len(line.text.replace(" ", "")) for line in lines)
    return tuple(lines) if visible >= MIN_TEXT_CHARS else ()


def pdf_page_count(reader: BinaryIO) -> int:
    reader.seek(0)
    with content.pdf_opened(reader, PdfUnreadable) as document:
        return len(document)


def pdf_pages(reader: BinaryIO, *, max_pages: int, max_side: int) -> Iterator[RenderedPage]:
    """Each of the first ``max_pages`` pages, rendered at most ``max_side`` square (like the
    model's page images) with its own text; a page that does not decode comes with no image."""
    reader.seek(0)
    with content.PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(reader)
        except pdfium.PdfiumError:
            raise PdfUnreadable() from None
    try:
        with content.PDFIUM_LOCK:
            count = min(len(document), max_pages)
        for index in range(count):
            yield _read_page(document, index, max_side)
    finally:
        with content.PDFIUM_LOCK:
            document.close()


def _read_page(document, index: int, max_side: int) -> RenderedPage:
    number = index + 1
    with content.decode_slot(), content.PDFIUM_LOCK:
        try:
            page = document[index]
            try:
                width, height = page.get_size()
                scale = max_side / max(width, height, 1)
                bitmap = page.render(scale=scale)
                try:
                    image = bitmap.to_pil()
                    image = (image.convert("RGB") if image.mode != "RGB" else image).copy()
                finally:
                    bitmap.close()
                rotated = page.get_rotation() % 360 != 0
                # A rotated page's text coordinates are not the rendered image's: OCR reads it.
                lines = () if rotated else _page_text(page, scale, height)
            finally:
                page.close()
        except Exception as error:
            if not content._is_damage(error):
                raise
            return RenderedPage(number=number, image=None, lines=())
    return RenderedPage(number=number, image=image, lines=lines, rotated=rotated)
