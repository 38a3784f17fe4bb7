"""The text layer's shapes, shared by the text-layer job, retrieval, grounding and search.

A page's text is a list of lines; each line has its text, its box on the page and a confidence.
Boxes are in the coordinates of the page image the model and the portal are shown
(``assets.reading.asset_page_images`` at its default size): ``(x0, y0, x1, y1)`` in pixels, origin
top left, so a portal can draw a box over a thumbnail by scaling. Pages are numbered from 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class TextSource(StrEnum):
    PDF = "pdf"  # the PDF's own text layer (pypdfium2)
    OCR = "ocr"  # PP-OCRv4 through rapidocr, for scanned pages and images
    OFFICE = "office"  # DOCX/XLSX/PPTX text (no boxes: the page is a rendering of the text)
    NONE = "none"  # an unusable page, or a page without text


@dataclass(frozen=True)
class Line:
    text: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in page-image pixels
    confidence: float = 1.0  # OCR's own confidence; 1.0 for a text layer


@dataclass(frozen=True)
class PageText:
    number: int  # 1-based
    lines: tuple[Line, ...] = ()
    source: TextSource = TextSource.NONE
    width: int = 0  # the page image's size the boxes refer to
    height: int = 0
    usable: bool = True  # False: the page failed to decode (never sent to a model)

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


@dataclass(frozen=True)
class DocumentText:
    pages: tuple[PageText, ...] = field(default_factory=tuple)

    def page(self, number: int) -> PageText | None:
        return self.pages[number - 1] if 1 <= number <= len(self.pages) else None
