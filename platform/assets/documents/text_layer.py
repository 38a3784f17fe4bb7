"""Making the text layer of one upload: every page read, once, in the background.

For each page: the PDF's own text (``pdf_text``) where it has enough of it, otherwise OCR
(``ocr``) of the rendered page; an image is one page, read by OCR. Every page is rendered, so the
same pass checks that each decodes: a page that does not is marked unusable on the asset
(``assets.services.asset_page_unusable_mark``) and kept in the layer as an unusable page without
text. Boxes are in the pixels of the page image ``assets.reading.asset_page_images`` returns at
its default size.

Limits (settings, README): pages per document (``TEXT_LAYER_MAX_PAGES``), seconds of OCR per
page (``OCR_PAGE_SECONDS``, measured after each page: onnxruntime cannot be interrupted
mid-call, and ``TEXT_LAYER_MAX_PAGE_PIXELS`` bounds what one call costs) and per document
(``OCR_DOCUMENT_SECONDS``, checked between pages). A document over a limit ends ``failed`` with a
reason from ``FAILURES`` (code + numbers; translated when shown), never a stuck job.

Extractors by content type are in ``TEXT_EXTRACTORS``: ``extractor(reader, *, asset, limits)``
yields ``PageText`` for pages 1, 2, … in order (``usable=False`` for a page that did not decode)
and raises ``TextLayerRefused`` for a document it refuses as a whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from PIL import Image

from assets import content
from assets.documents import pdf_text
from assets.documents.dicom import dicom_text_extractor
from assets.documents.ocr import ocr_lines
from assets.documents.office import office_text_extractor
from assets.documents.pages import DocumentText, Line, PageText, TextSource
from assets.reading import DEFAULT_MODEL_SIDE

# Why a text layer failed: the code stored on the row, the message shown (translated).
FAILURES: dict[str, Any] = {
    "too_many_pages": _("The document has %(pages)s pages; the text layer reads at most %(limit)s."),
    "page_too_large": _("Page %(page)s has %(pixels)s pixels; OCR reads at most %(limit)s per page."),
    "page_too_slow": _("Page %(page)s took %(seconds)s s to read; a page may take at most %(limit)s s."),
    "document_too_slow": _(
        "Reading stopped after %(seconds)s s at page %(page)s; a document may take at most %(limit)s s."
    ),
    "unreadable": _("The text layer could not be made: the file does not decode."),
    "unsupported": _("No text layer is made for this type of file."),
    "interrupted": _("Reading was interrupted %(attempts)s times (the server stopped); it was not tried again."),
    "error": _("Reading failed because of an internal error."),
}
# A rendered page with less contrast than this (max - min grey level) is blank: nothing to OCR.
BLANK_CONTRAST = 8


def _number(value: float) -> int | float:
    """A limit as a person writes it: 60, not 60.0."""
    return int(value) if float(value).is_integer() else value


class TextLayerRefused(Exception):
    """The document as a whole exceeds a limit or cannot be read; ``code`` is a FAILURES key."""

    def __init__(self, code: str, **params: Any) -> None:
        super().__init__(code)
        self.code = code
        self.params = params


def failure_message(code: str, params: dict[str, Any] | None) -> str:
    template = FAILURES.get(code, FAILURES["error"])
    try:
        return str(template) % (params or {})
    except (KeyError, TypeError, ValueError):
        return str(template)


@dataclass(frozen=True)
class TextLimits:
    max_pages: int
    page_seconds: float
    document_seconds: float
    max_page_pixels: int
    max_side: int = DEFAULT_MODEL_SIDE
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def from_settings(cls) -> TextLimits:
        return cls(
            max_pages=settings.TEXT_LAYER_MAX_PAGES,
            page_seconds=float(settings.OCR_PAGE_SECONDS),
            document_seconds=float(settings.OCR_DOCUMENT_SECONDS),
            max_page_pixels=settings.TEXT_LAYER_MAX_PAGE_PIXELS,
        )

    def ocr(self, image: Image.Image, *, page: int) -> tuple[Line, ...]:
        """OCR within the limits: the page's pixels first, then its time and the document's."""
        pixels = image.width * image.height
        if pixels > self.max_page_pixels:
            raise TextLayerRefused("page_too_large", page=page, pixels=pixels, limit=self.max_page_pixels)
        self.check_document(page=page)
        low, high = image.convert("L").getextrema()
        if high - low < BLANK_CONTRAST:
            return ()  # a blank page: no text, and no OCR time spent on it
        began = time.monotonic()
        lines = ocr_lines(image)
        spent = time.monotonic() - began
        if spent > self.page_seconds:
            raise TextLayerRefused(
                "page_too_slow", page=page, seconds=round(spent, 1), limit=_number(self.page_seconds)
            )
        return lines

    def check_document(self, *, page: int) -> None:
        spent = time.monotonic() - self.started
        if spent > self.document_seconds:
            raise TextLayerRefused(
                "document_too_slow", page=page, seconds=round(spent, 1), limit=_number(self.document_seconds)
            )


def _pdf_extractor(reader: BinaryIO, *, asset, limits: TextLimits) -> Iterator[PageText]:
    try:
        count = pdf_text.pdf_page_count(reader)
    except pdf_text.PdfUnreadable:
        raise TextLayerRefused("unreadable") from None
    if count > limits.max_pages:
        raise TextLayerRefused("too_many_pages", pages=count, limit=limits.max_pages)
    try:
        for page in pdf_text.pdf_pages(reader, max_pages=count, max_side=limits.max_side):
            if page.image is None:
                yield PageText(number=page.number, usable=False)
                continue
            width, height = page.image.size
            if page.lines:
                yield PageText(page.number, page.lines, TextSource.PDF, width, height)
                continue
            lines = limits.ocr(page.image, page=page.number)
            source = TextSource.OCR if lines else TextSource.NONE
            yield PageText(page.number, lines, source, width, height)
    except pdf_text.PdfUnreadable:
        raise TextLayerRefused("unreadable") from None


def _image_extractor(reader: BinaryIO, *, asset, limits: TextLimits) -> Iterator[PageText]:
    kind = content.KINDS[asset.content_type]
    try:
        (image,) = content.page_images(kind, reader, max_pages=1, max_side=limits.max_side)
    except content.PageUnreadable:
        yield PageText(number=1, usable=False)
        return
    lines = limits.ocr(image, page=1)
    yield PageText(1, lines, TextSource.OCR if lines else TextSource.NONE, image.width, image.height)


TEXT_EXTRACTORS: dict[str, Callable[..., Iterator[PageText]]] = {
    "application/pdf": _pdf_extractor,
    **{mime: _image_extractor for mime in content.KINDS if mime.startswith("image/")},
    **{kind.mime: office_text_extractor for kind in content.OFFICE_KINDS},
    content.DICOM.mime: dicom_text_extractor,
}


def page_to_json(page: PageText) -> dict[str, Any]:
    return {
        "number": page.number,
        "source": str(page.source),
        "width": page.width,
        "height": page.height,
        "usable": page.usable,
        "lines": [[line.text, list(line.box), round(line.confidence, 4)] for line in page.lines],
    }


def page_from_json(data: dict[str, Any]) -> PageText:
    return PageText(
        number=int(data["number"]),
        lines=tuple(
            Line(text=text, box=tuple(float(value) for value in box), confidence=float(confidence))
            for text, box, confidence in data.get("lines", ())
        ),
        source=TextSource(data.get("source", TextSource.NONE)),
        width=int(data.get("width", 0)),
        height=int(data.get("height", 0)),
        usable=bool(data.get("usable", True)),
    )


def document_from_json(pages: list[dict[str, Any]] | None) -> DocumentText:
    return DocumentText(pages=tuple(page_from_json(page) for page in pages or ()))
