"""Documents with known text, generated for the text-layer tests and bench/ocr_throughput.py.

Text is drawn with Debian's WenQuanYi Zen Hei (``fonts-wqy-zenhei``, scripts/system-packages):
a *scanned* page is a Pillow image of it saved as an image-only PDF (or PNG); a *born-digital*
page carries the same text as real PDF text objects (pdfium, the font embedded).
"""

from __future__ import annotations

import ctypes
import io
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image, ImageDraw, ImageFont

from tests.assets.samples import pdf_document_bytes

FONT_PATH = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
A4_POINTS = (595.0, 842.0)

INVOICE_LINES = (
    "增值税专用发票 No.12345678",
    "Invoice date: 2024-01-05",
    "购买方：上海示例贸易有限公司",
    "Seller: 北京某某科技有限公司",
    "Item: Consulting services",
    "合计金额：1,234.56元",
    "Total amount: 1,234.56 CNY",
)


def font_missing() -> str | None:
    return None if FONT_PATH.exists() else f"{FONT_PATH} is missing (install fonts-wqy-zenhei)"


def page_image(lines=INVOICE_LINES, *, dpi: int = 150, size_points=A4_POINTS, font_points: float = 14):
    """A white page at ``dpi`` with ``lines`` drawn from the top left; returns (image, boxes):
    each line's box in the image's pixels."""
    scale = dpi / 72
    width, height = round(size_points[0] * scale), round(size_points[1] * scale)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT_PATH), round(font_points * scale))
    boxes = []
    y = 72 * scale
    for line in lines:
        x = 72 * scale
        draw.text((x, y), line, font=font, fill="black")
        boxes.append(draw.textbbox((x, y), line, font=font))
        y += font_points * 2.2 * scale
    return image, boxes


def scanned_pdf(pages: int = 1, *, lines=INVOICE_LINES, dpi: int = 150, broken: frozenset[int] = frozenset()) -> bytes:
    """An image-only PDF of ``pages`` identical scanned pages (JPEG inside, like a scanner's)."""
    image, _boxes = page_image(lines, dpi=dpi)
    document = pdfium.PdfDocument.new()
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    jpeg = buffer.getvalue()
    for _ in range(pages):
        page = document.new_page(*A4_POINTS)
        picture = pdfium.PdfImage.new(document)
        picture.load_jpeg(io.BytesIO(jpeg), inline=True)
        picture.set_matrix(pdfium.PdfMatrix().scale(*A4_POINTS))
        page.insert_obj(picture)
        page.gen_content()
        page.close()
    return pdf_document_bytes(document)


def born_digital_pdf(lines=INVOICE_LINES, *, pages: int = 1, font_points: float = 14) -> tuple[bytes, list]:
    """A PDF whose pages carry ``lines`` as text objects at the places ``page_image`` draws
    them; returns (bytes, the lines' baseline positions in points: [(x, y_from_top)])."""
    document = pdfium.PdfDocument.new()
    data = FONT_PATH.read_bytes()
    font_buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    font = pdfium_c.FPDFText_LoadFont(document.raw, font_buffer, len(data), pdfium_c.FPDF_FONT_TRUETYPE, 1)
    positions = []
    for number in range(pages):
        page = document.new_page(*A4_POINTS)
        y = 72.0
        for line in lines:
            text = pdfium_c.FPDFPageObj_CreateTextObj(document.raw, font, font_points)
            encoded = ctypes.create_string_buffer((line + "\0").encode("utf-16-le"))
            pdfium_c.FPDFText_SetText(text, ctypes.cast(encoded, ctypes.POINTER(pdfium_c.FPDF_WCHAR)))
            baseline = A4_POINTS[1] - y - font_points
            pdfium_c.FPDFPageObj_Transform(text, 1, 0, 0, 1, 72.0, baseline)
            pdfium_c.FPDFPage_InsertObject(page.raw, text)
            if number == 0:
                positions.append((72.0, y + font_points))
            y += font_points * 2.2
        page.gen_content()
        page.close()
    return pdf_document_bytes(document), positions


def png_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
