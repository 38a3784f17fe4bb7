#!/usr/bin/env python
"""Grounding extracted values on generated invoices, against naive substring search.

    .venv/bin/python bench/grounding.py [--digital 30] [--scanned 6] [--noisy 0] [--seed 7]

Generates invoices with random fields (invoice number, date, seller and buyer, tax id, amounts, tax
rate, quantity, "tax included: yes", an English item line) among distractor pages of other numbers
and dates, each value written in one of its usual forms (¥1,234.56 / 1234.56元 / RMB 1,234.56 /
1,234.56; 2024年1月5日 / 2024-01-05 / 2024/1/5 / 2024.01.05), some amounts as separate text boxes
("¥" and the figure apart), and reads their text the way the platform does:

* born-digital: a 3-page PDF whose text is real PDF text (pdfium text objects, WenQuanYi Zen Hei
  embedded), read back through the PDF's own text layer (``assets.documents.pdf_text`` when the text
  layer module is present, else pdfium's text page directly);
* scanned: 2 pages drawn with Pillow at the model's page size, JPEG-compressed, read by OCR
  (PP-OCRv4 through ``assets.documents.ocr`` when present, else ``rapidocr_onnxruntime`` directly).

Then each field's value as a model would answer it (another form: 1234.56 for "¥1,234.56",
"2024-01-05" for "2024年1月5日") is grounded with ``assets.documents.grounding.ground_fields``
(labels from the built-in VAT template's schema), and with the baseline: the first line whose text
contains ``str(value)``. Figures printed for both, in the same run:

* correct values grounded to the right box (right page, and the box answered holds the centre of
  the value's drawn box while its own centre lies within the value's width): goal ≥ 95 %;
* absent values flagged (a neighbouring amount, 1 prepended to an amount — 11234.56 contains
  1234.56 —, an amount without its first digit — 234.56 is inside 1234.56 —, the next day,
  another company, a tax id with one character changed): goal 100 %;
* short values that are not the field's value grounded by accident ("是" when the invoice says 否,
  a quantity digit that occurs elsewhere, "1"/"是"/"13%" without a label): goal 0.
"""

from __future__ import annotations

import argparse
import ctypes
import io
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "platform")]

FONT_PATH = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
A4 = (595.0, 842.0)  # points
SIDE = 1600  # the model's page image: longest side (assets.reading.DEFAULT_MODEL_SIDE)
SCALE = SIDE / A4[1]
FONT_POINTS = 12.0
LEFT = 60.0

COMPANIES = [
    "北京某某科技有限公司",
    "上海示例贸易有限公司",
    "深圳市华南电子股份有限公司",
    "杭州西湖软件有限公司",
    "广州天河物流有限公司",
    "成都蜀光机械制造有限公司",
    "南京金陵医药有限公司",
    "武汉长江建材有限公司",
]
ITEMS = ["Consulting services", "Hydraulic pump repair", "Office furniture", "Cloud hosting fee", "Steel pipes DN50"]
TAX_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


@dataclass
class Field:
    name: str  # the VAT template's property (labels come from its schema)
    answer: object  # the value as the model answers it
    page: int  # where it is written
    box: tuple | None = None  # its drawn box, in page pixels


@dataclass
class Invoice:
    pages: list  # per page: list of rows, each a list of (text, is_value_of) pieces
    fields: list[Field] = field(default_factory=list)
    absent: list[tuple[str, object]] = field(default_factory=list)
    accidents: list[tuple[str, object]] = field(default_factory=list)  # (field name or "", short value)


def _amount_text(amount: float, rng: random.Random) -> tuple[str, str, str]:
    """(prefix kept apart, the written figure, suffix): the usual forms of an amount."""
    plain = f"{amount:.2f}"
    grouped = f"{amount:,.2f}"
    return rng.choice(
        [("¥", grouped, ""), ("", plain, "元"), ("RMB ", grouped, ""), ("", grouped, ""), ("￥", plain, "")]
    )


def _answer_of(amount: float, rng: random.Random) -> object:
    return rng.choice([amount, f"{amount:.2f}", f"¥{amount:,.2f}", f"{amount:.3f}", f"{amount:,.2f}"])


def _date_text(year: int, month: int, day: int, rng: random.Random) -> str:
    return rng.choice(
        [
            f"{year}年{month}月{day}日",
            f"{year}-{month:02d}-{day:02d}",
            f"{year}/{month}/{day}",
            f"{year}.{month:02d}.{day:02d}",
        ]
    )


def _tax_id(rng: random.Random) -> str:
    return (
        "91"
        + "".join(rng.choice("0123456789") for _ in range(6))
        + "".join(rng.choice(TAX_ALPHABET) for _ in range(10))
    )


def _distractor_page(rng: random.Random) -> list:
    rows = [[("交货单 Delivery note", None)]]
    for _ in range(6):
        rows.append(
            [
                (
                    f"批次 {rng.randint(100, 999)}  数量 {rng.randint(10, 99)}  "
                    f"单价 {rng.randint(10, 999)}.{rng.randint(10, 99)}  "
                    f"日期 2023-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    None,
                )
            ]
        )
    rows.append([("备注：本页不是发票 This page is not the invoice", None)])
    return rows


def make_invoice(rng: random.Random, *, pages: int) -> Invoice:
    excluding = round(rng.uniform(100, 99999), 2)
    rate = rng.choice([13, 9, 6])
    tax = round(excluding * rate / 100, 2)
    total = round(excluding + tax, 2)
    year, month, day = 2024, rng.randint(1, 12), rng.randint(1, 28)
    number = f"{rng.randint(0, 99999999):08d}"
    seller, buyer = rng.sample(COMPANIES, 2)
    seller_tax = _tax_id(rng)
    quantity = rng.randint(2, 9)
    included = rng.choice(["是", "否"])
    item = rng.choice(ITEMS)
    invoice_page = rng.randint(2, pages) if pages > 1 else 1

    def amount_row(label: str, amount: float, name: str, apart: bool):
        prefix, figure, suffix = _amount_text(amount, rng)
        if apart:  # the sign and the figure as separate boxes, as OCR and some PDFs give them
            return [(label, None), (prefix.strip() or "¥", "gap"), (figure + suffix, name)]
        return (
            [(label + prefix, None), (figure, name), (suffix, None)]
            if suffix
            else [(label + prefix, None), (figure, name)]
        )

    rows = [
        [("增值税专用发票", None)],
        [("发票号码：No.", None), (number, "invoice_number")],
        [("开票日期：", None), (_date_text(year, month, day, rng), "invoice_date")],
        [("销售方名称：", None), (seller, "seller_name")],
        [("纳税人识别号：", None), (seller_tax, "seller_tax_id")],
        [("购买方名称：", None), (buyer, "buyer_name")],
        [("Item: ", None), (item, "item")],
        [("数量：", None), (str(quantity), "quantity"), ("  单位：台", None)],
        amount_row("金额：", excluding, "amount_excluding_tax", rng.random() < 0.3),
        [("税率：", None), (f"{rate}%", "tax_rate"), ("  税额：", None), (f"{tax:,.2f}", "tax_amount")],
        amount_row("价税合计（小写）：", total, "total_amount", rng.random() < 0.3),
        [("是否含税：", None), (included, "tax_included")],
    ]
    document = [_distractor_page(rng) for _ in range(pages)]
    document[invoice_page - 1] = rows
    answers = {
        "invoice_number": number,
        "invoice_date": f"{year}-{month:02d}-{day:02d}",
        "seller_name": seller,
        "seller_tax_id": seller_tax,
        "buyer_name": buyer,
        "item": item,
        "quantity": quantity,
        "amount_excluding_tax": _answer_of(excluding, rng),
        "tax_rate": f"{rate}%",
        "tax_amount": _answer_of(tax, rng),
        "total_amount": _answer_of(total, rng),
    }
    if included == "是":
        answers["tax_included"] = "是"
    invoice = Invoice(pages=document)
    invoice.fields = [Field(name, answer, invoice_page) for name, answer in answers.items()]
    other_company = rng.choice([c for c in COMPANIES if c not in (seller, buyer)])
    changed = seller_tax[:-1] + rng.choice([c for c in TAX_ALPHABET if c != seller_tax[-1]])
    invoice.absent = [
        ("total_amount", round(total + 0.01, 2)),
        ("amount_excluding_tax", float(f"1{excluding:.2f}")),  # 11234.56: contains 1234.56
        ("tax_amount", float(f"{tax:.2f}"[1:])),  # 234.56: inside 1234.56
        ("invoice_date", f"{year}-{month:02d}-{day + 1:02d}"),
        ("buyer_name", other_company),
        ("seller_tax_id", changed),
    ]
    written = "".join(text for page in document for row in page for text, _ in row)
    elsewhere = [d for d in "123456789" if d != str(quantity) and d in written]
    invoice.accidents = [("", "1"), ("", "是"), ("", f"{rate}%"), ("quantity", int(rng.choice(elsewhere)))]
    if included == "否":
        invoice.accidents.append(("tax_included", "是"))
    return invoice


# --- drawing ----------------------------------------------------------------------------------------


def _font(points: float):
    from PIL import ImageFont

    return ImageFont.truetype(str(FONT_PATH), round(points * SCALE * 4))  # 4×: sub-pixel widths


def _layout(page_rows, font) -> list[list[tuple[str, object, float]]]:
    """Each piece's x in points; a "gap" piece stands 1.5 em to the right of what precedes it."""
    laid = []
    for row in page_rows:
        x, pieces = LEFT, []
        for text, name in row:
            if name == "gap":
                x += FONT_POINTS * 1.5
            pieces.append((text, name, x))
            x += font.getlength(text) / (SCALE * 4)
            if name == "gap":
                x += FONT_POINTS * 1.5
        laid.append(pieces)
    return laid


def _row_top(index: int) -> float:
    return 60.0 + index * FONT_POINTS * 2.4


def born_digital(invoice: Invoice) -> bytes:
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    from tests.assets.samples import pdf_document_bytes

    font_measure = _font(FONT_POINTS)
    document = pdfium.PdfDocument.new()
    data = FONT_PATH.read_bytes()
    buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    font = pdfium_c.FPDFText_LoadFont(document.raw, buffer, len(data), pdfium_c.FPDF_FONT_TRUETYPE, 1)
    for number, rows in enumerate(invoice.pages, start=1):
        page = document.new_page(*A4)
        for index, pieces in enumerate(_layout(rows, font_measure)):
            top = _row_top(index)
            for text, name, x in pieces:
                if not text.strip():
                    continue
                obj = pdfium_c.FPDFPageObj_CreateTextObj(document.raw, font, FONT_POINTS)
                encoded = ctypes.create_string_buffer((text + "\0").encode("utf-16-le"))
                pdfium_c.FPDFText_SetText(obj, ctypes.cast(encoded, ctypes.POINTER(pdfium_c.FPDF_WCHAR)))
                pdfium_c.FPDFPageObj_Transform(obj, 1, 0, 0, 1, x, A4[1] - top - FONT_POINTS * 0.88)
                pdfium_c.FPDFPage_InsertObject(page.raw, obj)
                _record(invoice, number, name, text, x, top, font_measure)
        page.gen_content()
        page.close()
    return pdf_document_bytes(document)


def _record(invoice: Invoice, page: int, name, text: str, x: float, top: float, font) -> None:
    for item in invoice.fields:
        if item.name == name and item.page == page:
            width = font.getlength(text.rstrip("元")) / (SCALE * 4)
            item.box = (x * SCALE, top * SCALE, (x + width) * SCALE, (top + FONT_POINTS) * SCALE)


def scanned(invoice: Invoice, rng: random.Random, *, noisy: bool = False) -> list:
    """Each page drawn at the model's page size and JPEG-compressed; ``noisy``: a worse scanner —
    grey paper, speckles, a slight blur and heavier compression (no skew: the drawn boxes stay
    the truth)."""
    from PIL import Image, ImageDraw, ImageFilter

    font = _font(FONT_POINTS)
    draw_font = _font(FONT_POINTS / 4)  # the drawing size: 1 pt = SCALE pixels
    width, height = round(A4[0] * SCALE), SIDE
    images = []
    for number, rows in enumerate(invoice.pages, start=1):
        image = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(image)
        for index, pieces in enumerate(_layout(rows, font)):
            top = _row_top(index)
            for text, name, x in pieces:
                draw.text((x * SCALE, top * SCALE), text, font=draw_font, fill=(20, 20, 20))
                _record(invoice, number, name, text, x, top, font)
        if noisy:
            speckles = Image.effect_noise(image.size, 48).convert("RGB")
            image = Image.blend(image, speckles, 0.18).filter(ImageFilter.GaussianBlur(0.9))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=rng.choice([35, 45]) if noisy else rng.choice([70, 80, 90]))
        images.append(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return images


# --- reading ----------------------------------------------------------------------------------------


def read_pdf(data: bytes):
    from assets.documents.pages import DocumentText, Line, PageText, TextSource

    try:
        from assets.documents import pdf_text
    except ImportError:
        pdf_text = None
    pages = []
    if pdf_text is not None:
        for rendered in pdf_text.pdf_pages(io.BytesIO(data), max_pages=10, max_side=SIDE):
            pages.append(
                PageText(
                    number=rendered.number,
                    lines=rendered.lines,
                    source=TextSource.PDF,
                    width=rendered.image.width,
                    height=rendered.image.height,
                )
            )
        return DocumentText(pages=tuple(pages))
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(io.BytesIO(data))
    for index in range(len(document)):
        page = document[index]
        w, h = page.get_size()
        scale = SIDE / max(w, h)
        textpage = page.get_textpage()
        lines = []
        for rect in range(textpage.count_rects()):
            left, bottom, right, top = textpage.get_rect(rect)
            text = " ".join(textpage.get_text_bounded(left, bottom, right, top).split())
            if text:
                lines.append(Line(text, (left * scale, (h - top) * scale, right * scale, (h - bottom) * scale)))
        pages.append(PageText(index + 1, tuple(lines), TextSource.PDF, round(w * scale), round(h * scale)))
    return DocumentText(pages=tuple(pages))


def read_scans(images):
    from assets.documents.pages import DocumentText, Line, PageText, TextSource

    try:
        from assets.documents.ocr import ocr_lines
    except ImportError:
        ocr_lines = None
    pages = []
    for number, image in enumerate(images, start=1):
        if ocr_lines is not None:
            lines = ocr_lines(image)
        else:
            import numpy as np
            from rapidocr_onnxruntime import RapidOCR

            global _OCR
            _OCR = globals().get("_OCR") or RapidOCR()
            result, _ = _OCR(np.asarray(image)[:, :, ::-1].copy())
            lines = tuple(
                Line(
                    str(text),
                    (min(p[0] for p in pts), min(p[1] for p in pts), max(p[0] for p in pts), max(p[1] for p in pts)),
                )
                for pts, text, _conf in result or ()
            )
        pages.append(PageText(number, lines, TextSource.OCR, image.width, image.height))
    return DocumentText(pages=tuple(pages))


# --- scoring ----------------------------------------------------------------------------------------


def right_box(found_page: int, box, item: Field) -> bool:
    if found_page != item.page or item.box is None or box is None:
        return False
    tx0, ty0, tx1, ty1 = item.box
    cx, cy = (tx0 + tx1) / 2, (ty0 + ty1) / 2
    holds_centre = box[0] <= cx <= box[2] and box[1] - 4 <= cy <= box[3] + 4
    own_centre = tx0 - 4 <= (box[0] + box[2]) / 2 <= tx1 + 4
    return holds_centre and own_centre


def naive(document, value):
    for page in document.pages:
        for line in page.lines:
            if str(value) in line.text:
                return page.number, line.box
    return None


@dataclass
class Tally:
    correct: int = 0
    grounded_right: int = 0
    absent: int = 0
    absent_flagged: int = 0
    accidents: int = 0
    accidents_grounded: int = 0
    misses: list = field(default_factory=list)


def score(invoice: Invoice, document, ours: Tally, baseline: Tally) -> None:
    from assets.documents.grounding import DocumentIndex, labels_of
    from inference.extraction.services import VAT_INVOICE_SCHEMA

    properties = dict(VAT_INVOICE_SCHEMA["properties"])
    properties.update(
        {
            "quantity": {"type": "integer", "description": "数量"},
            "tax_included": {"type": "string", "description": "是否含税"},
            "item": {"type": "string", "description": "Item"},
        }
    )
    index = DocumentIndex(document)

    def ours_ground(name, value):
        return index.ground(value, labels=labels_of(name, properties.get(name)) if name else ())

    for item in invoice.fields:
        found = ours_ground(item.name, item.answer)
        ours.correct += 1
        if found is not None and right_box(found.page, found.box, item):
            ours.grounded_right += 1
        else:
            ours.misses.append((item.name, item.answer, found and (found.page, found.text)))
        hit = naive(document, item.answer)
        baseline.correct += 1
        baseline.grounded_right += int(hit is not None and right_box(hit[0], hit[1], item))
    for name, value in invoice.absent:
        ours.absent += 1
        ours.absent_flagged += int(ours_ground(name, value) is None)
        baseline.absent += 1
        baseline.absent_flagged += int(naive(document, value) is None)
    for name, value in invoice.accidents:
        ours.accidents += 1
        grounded = ours_ground(name, value)
        ours.accidents_grounded += int(grounded is not None)
        if grounded is not None:
            ours.misses.append(("accident", name, value, grounded.text))
        baseline.accidents += 1
        baseline.accidents_grounded += int(naive(document, value) is not None)


def report(title: str, ours: Tally, baseline: Tally) -> None:
    def pct(a, b):
        return f"{100.0 * a / max(b, 1):5.1f} %"

    print(f"\n{title}")
    print(f"  {'':38}{'grounding':>12}{'substring':>12}")
    print(
        f"  {'correct values grounded to the right box':38}{pct(ours.grounded_right, ours.correct):>12}"
        f"{pct(baseline.grounded_right, baseline.correct):>12}   ({ours.correct} values; goal >= 95 %)"
    )
    print(
        f"  {'absent values flagged':38}{pct(ours.absent_flagged, ours.absent):>12}"
        f"{pct(baseline.absent_flagged, baseline.absent):>12}   ({ours.absent} values; goal 100 %)"
    )
    print(
        f"  {'short values grounded by accident':38}{ours.accidents_grounded:>12}"
        f"{baseline.accidents_grounded:>12}   (of {ours.accidents}; goal 0)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digital", type=int, default=30, help="born-digital invoices (3 pages each)")
    parser.add_argument("--scanned", type=int, default=6, help="scanned invoices (2 pages each, OCR)")
    parser.add_argument("--noisy", type=int, default=0, help="scanned invoices from a worse scanner (OCR)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args()
    if not FONT_PATH.exists():
        sys.exit(f"{FONT_PATH} is missing (install fonts-wqy-zenhei)")
    os.environ.setdefault("PLATFORM_PROFILE", "test")
    os.environ.setdefault("DATA_DIR", tempfile.mkdtemp(prefix="bench-grounding-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    rng = random.Random(args.seed)
    results = {}
    kinds = (
        ("born-digital (PDF text)", args.digital),
        ("scanned (OCR)", args.scanned),
        ("noisy scans (OCR)", args.noisy),
    )
    for kind, count in kinds:
        if not count:
            continue
        ours, baseline = Tally(), Tally()
        started = time.perf_counter()
        reading = grounding = 0.0
        for _ in range(count):
            if kind.startswith("born"):
                invoice = make_invoice(rng, pages=3)
                data = born_digital(invoice)
                t0 = time.perf_counter()
                document = read_pdf(data)
            else:
                invoice = make_invoice(rng, pages=2)
                images = scanned(invoice, rng, noisy=kind.startswith("noisy"))
                t0 = time.perf_counter()
                document = read_scans(images)
            t1 = time.perf_counter()
            score(invoice, document, ours, baseline)
            reading += t1 - t0
            grounding += time.perf_counter() - t1
        results[kind] = (ours, baseline)
        report(
            f"{kind}: {count} invoices in {time.perf_counter() - started:.1f} s "
            f"(reading {reading:.1f} s, grounding {grounding:.2f} s)",
            ours,
            baseline,
        )
        if args.show_misses:
            for miss in ours.misses:
                print("   miss:", miss)
    total, total_base = Tally(), Tally()
    for ours, baseline in results.values():
        for name in ("correct", "grounded_right", "absent", "absent_flagged", "accidents", "accidents_grounded"):
            setattr(total, name, getattr(total, name) + getattr(ours, name))
            setattr(total_base, name, getattr(total_base, name) + getattr(baseline, name))
    report("all invoices", total, total_base)


if __name__ == "__main__":
    main()
