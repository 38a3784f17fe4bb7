"""Extraction over whole documents: the pages the model is shown come from the template's fields,
every extracted value is grounded in the text layer (page + box, or ungrounded), and a rule can
require grounding. The text layer is made by the real job (committed transactions: the job runs on
its worker thread after the upload commits)."""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import pytest
from django.utils import translation

from departments.tenancy import department_scope
from inference.engine.handles import Result, Usage
from inference.extraction.services import (
    GROUNDED_MESSAGE,
    VAT_INVOICE_SCHEMA,
    extraction_ground,
    extraction_run,
    rules_evaluate,
    rules_validate,
)
from tests.api import conftest as api_fixtures
from tests.conftest import requirement_missing
from tests.support.assets import asset_upload_bytes
from tests.support.extractions import GOOD_INVOICE

api_engine = api_fixtures.api_engine  # the demo model as the process's engine
api_storage = api_fixtures.api_storage  # storage and key ring of this test's own
key_a = api_fixtures.key_a

FONT_PATH = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
A4 = (595.0, 842.0)
FONT_POINTS = 12.0
SCALE = 1600 / A4[1]  # the model's page image: longest side 1600 pixels
DEADLINE = 90.0  # seconds for the text layer of six born-digital pages on a loaded 2-core machine

INVOICE_PAGE = [
    "增值税专用发票",
    "发票号码：No.04419876",
    "开票日期：2025年3月14日",
    "销售方名称：上海某某机械有限公司",
    "纳税人识别号：91310115MA1H7GXX3B",
    "购买方名称：某某制造股份有限公司",
    "金额：¥11,327.43",
    "税率：13%    税额：1,472.57",
    "价税合计（小写）：¥12,800.00",
]
OTHER_PAGES = [
    ["Delivery note 交货单", "Batch 314 shipped on 2025-02-02", "Carrier: Example Freight Ltd."],
    ["Terms and conditions", "Payment within 30 days", "Warranty 12 months from delivery"],
    ["Packing list", "Pallets 4, cartons 37", "Gross weight 812 kg"],
    ["Inspection report 检验报告", "Pressure 0.62 MPa", "Result: passed"],
    ["Cover letter", "Dear customer, please find the documents enclosed.", "Regards"],
]
ANSWER = dict(GOOD_INVOICE)  # its buyer_tax_id is written nowhere on the document
RULES = [
    {"field": "total_amount", "op": "grounded", "outcome": "total_not_found"},
    {"field": "buyer_tax_id", "op": "grounded"},  # outcome "ungrounded", the translated message
]


def _row_top(index: int) -> float:
    return 60.0 + index * FONT_POINTS * 2.4


def invoice_bundle_pdf() -> bytes:
    """Six born-digital pages (real PDF text, the font embedded): five others, the invoice last."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    from tests.assets.samples import pdf_document_bytes

    document = pdfium.PdfDocument.new()
    data = FONT_PATH.read_bytes()
    buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    font = pdfium_c.FPDFText_LoadFont(document.raw, buffer, len(data), pdfium_c.FPDF_FONT_TRUETYPE, 1)
    for lines in [*OTHER_PAGES, INVOICE_PAGE]:
        page = document.new_page(*A4)
        for index, line in enumerate(lines):
            text = pdfium_c.FPDFPageObj_CreateTextObj(document.raw, font, FONT_POINTS)
            encoded = ctypes.create_string_buffer((line + "\0").encode("utf-16-le"))
            pdfium_c.FPDFText_SetText(text, ctypes.cast(encoded, ctypes.POINTER(pdfium_c.FPDF_WCHAR)))
            pdfium_c.FPDFPageObj_Transform(text, 1, 0, 0, 1, 60.0, A4[1] - _row_top(index) - FONT_POINTS * 0.88)
            pdfium_c.FPDFPage_InsertObject(page.raw, text)
        page.gen_content()
        page.close()
    return pdf_document_bytes(document)


class ScriptedEngine:
    """The process's demo engine (its identity, limits and audit record) answering a fixed JSON:
    the demo model's random weights cannot read an invoice, which is what this test needs. It
    records what the model was shown."""

    def __init__(self, engine, answer: dict) -> None:
        self.engine, self.answer, self.seen = engine, answer, []
        self.limits = engine.limits

    def info(self):
        return self.engine.info()

    def submit(self, messages, **_params):
        self.seen.append(messages)
        text = json.dumps(self.answer, ensure_ascii=False)
        result = Result(text=text, usage=Usage(50, 20, 0.0, 0.01, 0.02, 100.0, 1), finish_reason="stop")
        return type("Handle", (), {"result": lambda self: result})()


def _upload_bundle(personas, settings, *, text_layer: bool):
    """The six-page bundle uploaded to department A; with its text layer made by the real job
    (the PDF's own text: no OCR needed), or with none (no text-layer worker in this process)."""
    if not FONT_PATH.exists():
        requirement_missing(f"{FONT_PATH} is missing (install fonts-wqy-zenhei)")
    from assets.documents.models import TextLayerStatus
    from tests.assets.test_text_layer import finished_layer

    settings.MAX_PDF_PAGES = 50
    settings.MAX_UPLOAD_MB = 20  # pdfium embeds the whole CJK font (~10 MB)
    settings.TEXT_LAYER_WORKERS = 1 if text_layer else 0
    settings.TEXT_LAYER_MAX_PAGES = 50
    asset = asset_upload_bytes(
        invoice_bundle_pdf(), "bundle.pdf", department=personas.department_a, uploaded_by=personas.admin
    )
    if text_layer:
        layer = finished_layer(asset, timeout=DEADLINE)
        assert layer.status == TextLayerStatus.DONE, layer.status
    return asset


@pytest.fixture
def bundle(personas, system_context, settings):
    return _upload_bundle(personas, settings, text_layer=True)


@pytest.fixture
def bundle_without_text(personas, system_context, settings):
    return _upload_bundle(personas, settings, text_layer=False)


@pytest.fixture
def invoice_template(personas):
    from inference.models import TaskTemplate

    with department_scope(personas.department_a):
        return TaskTemplate.objects.create(
            department=personas.department_a,
            slug="invoice-grounded",
            name="Invoice (grounded)",
            instruction="Read the VAT invoice.",
            json_schema=VAT_INVOICE_SCHEMA,
            rules=RULES,
        )


@pytest.mark.django_db(transaction=True)
def test_an_extraction_is_shown_the_invoice_page_and_grounds_each_value(
    api_engine, bundle, invoice_template, personas, key_a, client_for
):
    raw, key = key_a
    engine = ScriptedEngine(api_engine, ANSWER)
    extraction = extraction_run(
        department=personas.department_a, template=invoice_template, asset=bundle, engine=engine, api_key=key
    )
    assert extraction.status == "valid", extraction.problems
    pages = extraction.usage["pages"]
    assert 6 in pages and pages == sorted(pages) and len(pages) <= 4  # the invoice is the last page
    shown = engine.seen[0][-1].images
    assert len(shown) == len(pages) and max(shown[0].size) == 1600

    grounding = extraction.usage["grounding"]
    assert set(grounding) == set(ANSWER)
    assert grounding["buyer_tax_id"] == {"ungrounded": True}
    for name in set(ANSWER) - {"buyer_tax_id"}:
        entry = grounding[name]
        assert entry["page"] == 6 and entry["source"] == "pdf", name
        assert (entry["width"], entry["height"]) == (round(A4[0] * SCALE), 1600)
    # Each box sits on the row its value was written on, to the right of its label.
    for name, row in (("invoice_date", 2), ("total_amount", 8), ("tax_rate", 7), ("tax_amount", 7)):
        x0, y0, x1, y1 = grounding[name]["box"]
        centre = (_row_top(row) + FONT_POINTS / 2) * SCALE
        assert y0 <= centre <= y1 and x0 > 60 * SCALE + 3 * FONT_POINTS * SCALE, name
    assert grounding["tax_amount"]["box"][0] > grounding["tax_rate"]["box"][2]

    # The grounding rule: the total is found, the buyer's tax id is not.
    outcomes = {o["field"]: o for o in extraction.rule_outcomes}
    assert outcomes["total_amount"]["triggered"] is False
    assert outcomes["buyer_tax_id"]["triggered"] is True and outcomes["buyer_tax_id"]["outcome"] == "ungrounded"
    assert extraction.flags == ["ungrounded"]

    # The API answers the pages and the grounding beside the result; usage keeps its counts.
    body = client_for(raw).get(f"/api/v1/extractions/{extraction.pk}").json()
    assert body["pages"] == pages and body["grounding"] == grounding
    assert body["result"] == ANSWER and "grounding" not in body["usage"] and "pages" not in body["usage"]


@pytest.mark.django_db(transaction=True)
def test_a_batchs_downloads_carry_the_pages_and_the_grounding(api_engine, bundle, invoice_template, personas, key_a):
    """The batch's JSONL (API) and the portal's export records answer where each value was found, as
    a single extraction does."""
    from inference.extraction.batch_jobs import batch_create, batch_results_jsonl, batch_run
    from inference.extraction.exports import batch_export_records

    _raw, key = key_a
    with department_scope(personas.department_a):
        job = batch_create(
            department=personas.department_a, template=invoice_template, asset_ids=[str(bundle.pk)], api_key=key
        )
    batch_run(job.pk, engine=ScriptedEngine(api_engine, ANSWER))
    (line,) = [json.loads(row) for row in batch_results_jsonl(job)]
    assert line["status"] == "valid" and 6 in line["pages"]
    assert line["grounding"]["total_amount"]["page"] == 6 and line["grounding"]["buyer_tax_id"] == {"ungrounded": True}
    with department_scope(personas.department_a):
        (record,) = batch_export_records(job)
    assert record["pages"] == line["pages"] and record["grounding"] == line["grounding"]


@pytest.mark.django_db(transaction=True)
def test_without_a_text_layer_the_first_pages_are_shown_and_nothing_is_grounded(
    api_engine, bundle_without_text, invoice_template, personas, key_a
):
    _raw, key = key_a
    extraction = extraction_run(
        department=personas.department_a,
        template=invoice_template,
        asset=bundle_without_text,
        engine=ScriptedEngine(api_engine, ANSWER),
        api_key=key,
    )
    assert extraction.usage["pages"] == [1, 2, 3, 4]
    assert set(extraction.usage["grounding"]) == set(ANSWER)
    assert all(entry == {"ungrounded": True} for entry in extraction.usage["grounding"].values())
    assert extraction.flags == ["total_not_found", "ungrounded"]


@pytest.mark.django_db(transaction=True)
def test_the_demo_model_is_shown_the_chosen_pages_too(api_engine, bundle, invoice_template, personas, key_a, settings):
    settings.EXTRACTION_MAX_NEW_TOKENS = 16
    settings.STRUCTURED_OUTPUT_ATTEMPTS = 1
    _raw, key = key_a
    extraction = extraction_run(
        department=personas.department_a, template=invoice_template, asset=bundle, engine=api_engine, api_key=key
    )
    # Its random weights write no valid JSON: no result, nothing to ground; the pages are recorded.
    assert extraction.status == "invalid" and "grounding" not in extraction.usage
    assert 6 in extraction.usage["pages"]


def test_the_grounded_rule_is_validated_and_evaluated():
    assert rules_validate(RULES) == []
    assert rules_validate([{"field": "total", "op": "grounded", "outcome": ""}]) != []
    assert rules_validate([{"op": "grounded"}])[0].startswith("Rule 0:")
    value = {"total": 5, "items": [{"name": "pump"}, {"name": "valve"}], "empty": ""}
    grounding = {
        "total": {"page": 1, "box": [0, 0, 1, 1], "source": "pdf", "width": 10, "height": 10},
        "items[0].name": {"page": 1, "box": [0, 0, 1, 1], "source": "pdf", "width": 10, "height": 10},
        "items[1].name": {"ungrounded": True},
    }

    def triggered(field):
        (outcome,) = rules_evaluate([{"field": field, "op": "grounded"}], value, grounding=grounding)
        return outcome["triggered"]

    assert triggered("total") is False
    assert triggered("items[*].name") is True  # one element's value is nowhere in the document
    assert triggered("items") is True
    assert triggered("empty") is True and triggered("absent") is True  # nothing to find
    assert triggered("tot") is True  # a path is matched whole, not as a prefix
    (no_layer,) = rules_evaluate([{"field": "total", "op": "grounded"}], value)
    assert no_layer["triggered"] is True and no_layer["outcome"] == "ungrounded"


def test_the_grounded_rule_message_is_translated():
    with translation.override("en"):
        (english,) = rules_evaluate([{"field": "total", "op": "grounded"}], {"total": 1})
    with translation.override("zh-hans"):
        (chinese,) = rules_evaluate([{"field": "total", "op": "grounded"}], {"total": 1})
    assert english["message"] == GROUNDED_MESSAGE.format(field="total")
    assert chinese["message"] == "字段 total 的值在文档中未找到。"
    (own,) = rules_evaluate([{"field": "total", "op": "grounded", "message": "发票金额须可查"}], {"total": 1})
    assert own["message"] == "发票金额须可查"


def test_extraction_ground_keeps_coordinates_only():
    from assets.documents.pages import DocumentText, Line, PageText, TextSource

    page = PageText(1, (Line("合计：¥12,800.00", (10, 20, 210, 40)),), TextSource.OCR, 300, 400)
    grounding = extraction_ground({"total": 12800, "other": "nowhere"}, schema=None, document=DocumentText((page,)))
    assert grounding["other"] == {"ungrounded": True}
    assert set(grounding["total"]) == {"page", "box", "source", "width", "height"}
    assert grounding["total"]["page"] == 1 and grounding["total"]["source"] == "ocr"
    assert extraction_ground({"total": 12800}, schema=None, document=None) == {"total": {"ungrounded": True}}


def test_with_a_schema_only_the_paths_it_declares_are_grounded():
    """Grounding is kept in the clear (usage): its paths come from the template, never from a key
    the model made up, which is content read from the file, at any depth."""
    from assets.documents.pages import DocumentText, Line, PageText, TextSource

    page = PageText(1, (Line("合计：¥12,800.00 张三", (10, 20, 210, 40)),), TextSource.OCR, 300, 400)
    schema = {
        "type": "object",
        "properties": {
            "total": {"type": "number"},
            "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
            "free": {"type": "object"},
        },
    }
    answer = {
        "total": 12800,
        "张三 110101199003074512": "张三",
        "items": [{"name": "张三", "身份证 110101199003074512": "x"}],
        "free": {"住址 北京": "x"},
    }
    grounding = extraction_ground(answer, schema=schema, document=DocumentText((page,)))
    assert set(grounding) == {"total", "items[0].name"}
