"""Generated PDFs for the retrieval and search tests: every page a different width (so a
rendered page image tells which page it is) carrying its own text as real PDF text (pdfium,
the standard Helvetica font: ASCII only, a few KB). Tested here: pdfium reads back each page's
text and the widths tell the pages apart."""

from __future__ import annotations

import ctypes
import math

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from tests.assets.samples import pdf_document_bytes

PAGE_HEIGHT = 400.0


def page_width(number: int) -> float:
    """Page ``number``'s width in points: all narrower than tall, each a different width."""
    return 200.0 + 8.0 * number


def rendered_width(number: int, side: int) -> int:
    """The width of page ``number`` rendered with its longest side (the height) ``side``
    (pypdfium2 rounds a rendered size up)."""
    return math.ceil(page_width(number) * (side / PAGE_HEIGHT))


def text_pdf(pages: list[str]) -> bytes:
    """A PDF of ``len(pages)`` pages, page n carrying ``pages[n - 1]`` (lines split on newlines)."""
    document = pdfium.PdfDocument.new()
    font = pdfium_c.FPDFText_LoadStandardFont(document.raw, b"Helvetica")
    for number, text in enumerate(pages, start=1):
        page = document.new_page(page_width(number), PAGE_HEIGHT)
        y = PAGE_HEIGHT - 40.0
        for line in text.split("\n"):
            if line:
                obj = pdfium_c.FPDFPageObj_CreateTextObj(document.raw, font, 9.0)
                encoded = ctypes.create_string_buffer((line + "\0").encode("utf-16-le"))
                pdfium_c.FPDFText_SetText(obj, ctypes.cast(encoded, ctypes.POINTER(pdfium_c.FPDF_WCHAR)))
                pdfium_c.FPDFPageObj_Transform(obj, 1, 0, 0, 1, 12.0, y)
                pdfium_c.FPDFPage_InsertObject(page.raw, obj)
            y -= 14.0
        page.gen_content()
        page.close()
    return pdf_document_bytes(document)


def test_each_page_carries_its_own_text_and_width():
    data = text_pdf(["Alpha page\nsecond line", "", "Gamma page"])
    document = pdfium.PdfDocument(data)
    try:
        assert len(document) == 3
        texts = []
        for index in range(3):
            page = document[index]
            text_page = page.get_textpage()
            texts.append(text_page.get_text_range())
            assert page.get_size() == (page_width(index + 1), PAGE_HEIGHT)
            text_page.close()
            page.close()
    finally:
        document.close()
    assert "Alpha page" in texts[0] and "second line" in texts[0]
    assert texts[1].strip() == "" and "Gamma page" in texts[2]
    assert len({rendered_width(number, 1600) for number in range(1, 60)}) == 59
