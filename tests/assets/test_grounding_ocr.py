"""Grounding on a scanned invoice: the real text-layer job reads it by OCR (PP-OCRv4), and the
values a model would answer, in other forms than the ones printed, ground on the boxes where they
were drawn; short and absent values do not."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from assets.documents.grounding import ground_fields
from assets.documents.models import TextLayerStatus
from assets.documents.selectors import document_text
from departments.tenancy import department_scope
from inference.extraction.services import VAT_INVOICE_SCHEMA
from tests.assets.test_text_layer import finished_layer
from tests.conftest import requirement_missing

pytestmark = pytest.mark.django_db(transaction=True)

FONT_PATH = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
DEADLINE = 120.0  # one scanned page through OCR on a loaded 2-core machine
# (label, value as printed, field) rows of the scan
ROWS = [
    ("增值税专用发票", "", None),
    ("开票日期：", "2025年3月14日", "invoice_date"),
    ("销售方名称：", "上海某某机械有限公司", "seller_name"),
    ("税率：", "13%", "tax_rate"),
    ("价税合计（小写）：", "¥12,800.00", "total_amount"),
]


def scanned_invoice() -> tuple[bytes, dict]:
    """A page image (well under 1600 px: boxes are its own pixels) and each value's drawn box."""
    image = Image.new("RGB", (900, 420), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT_PATH), 28)
    boxes = {}
    for index, (label, value, name) in enumerate(ROWS):
        y = 40 + index * 70
        draw.text((40, y), label, font=font, fill="black")
        x = 40 + draw.textlength(label, font=font)
        draw.text((x, y), value, font=font, fill="black")
        if name:
            boxes[name] = draw.textbbox((x, y), value, font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue(), boxes


def test_values_ground_on_their_boxes_in_an_ocr_text_layer(upload, settings):
    if not FONT_PATH.exists():
        requirement_missing(f"{FONT_PATH} is missing (install fonts-wqy-zenhei)")
    settings.TEXT_LAYER_WORKERS = 1
    settings.OCR_PAGE_SECONDS = 120
    settings.OCR_DOCUMENT_SECONDS = 600
    data, drawn = scanned_invoice()
    asset = upload(data, "scan.jpg")
    layer = finished_layer(asset, timeout=DEADLINE)
    assert layer.status == TextLayerStatus.DONE, layer.failure
    with department_scope(asset.department_id):
        document = document_text(asset)
    assert document.pages[0].source == "ocr"

    answer = {
        "invoice_date": "2025-03-14",
        "seller_name": "上海某某机械有限公司",
        "tax_rate": "13%",  # short: grounds only next to its label 税率
        "total_amount": 12800,
        "buyer_name": "北京某某科技有限公司",  # not on the page
        "tax_amount": 12.8,  # not on the page (and no whole number inside 12,800.00)
    }
    found = ground_fields(document, answer, schema=VAT_INVOICE_SCHEMA)
    assert found["buyer_name"] is None and found["tax_amount"] is None
    for name, (x0, y0, x1, y1) in drawn.items():
        grounding = found[name]
        assert grounding is not None and grounding.page == 1 and grounding.source == "ocr", name
        centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        box = grounding.box
        assert box[0] <= centre[0] <= box[2] and box[1] - 4 <= centre[1] <= box[3] + 4, (name, box, drawn[name])
        assert x0 - 8 <= (box[0] + box[2]) / 2 <= x1 + 8, (name, box, drawn[name])  # the value, not its label
    # Short values of other fields, or with no label, never ground on the scan's "13%" or "3".
    assert ground_fields(document, {"quantity": "13%", "x": "3"}) == {"quantity": None, "x": None}
