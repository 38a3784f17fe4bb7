"""The portal's extraction pages (/d/<slug>/extract/): three personas and an API key, a run on the
real demo engine, reviewers' corrections (the original kept, sealed, audited), batches with their
status and CSV/XLSX/JSONL downloads (formula cells neutralised), and the template editor's rules."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import translation

from accounts.permissions import NOT_FOR_API_KEYS, Action, decide
from compliance.models import AuditEntry
from departments.tenancy import department_scope
from inference.extraction import forms
from inference.extraction.batch_jobs import batch_run
from inference.extraction.models import BUILTIN_DISPLAY, BatchJob, Extraction, ExtractionCorrection, ExtractionStatus
from inference.extraction.services import BUILTIN_TEMPLATES, templates_builtin_ensure
from inference.models import TaskTemplate
from tests.api import conftest as api_fixtures
from tests.api.conftest import png_bytes
from tests.support.assets import asset_upload_bytes
from tests.support.extractions import vat_invoice_result

pytestmark = pytest.mark.django_db

PASSWORD = "Correct-Horse-9"
api_engine = api_fixtures.api_engine  # the demo model as the process's engine
INVOICE = {
    "invoice_type": "增值税专用发票",
    "invoice_number": "04419876",
    "invoice_date": "2025-03-14",
    "seller_name": '=HYPERLINK("http://evil.example","click")',
    "seller_tax_id": "91310115MA1H7GXX3B",
    "buyer_name": "某某制造股份有限公司",
    "amount_excluding_tax": 11327.43,
    "tax_amount": 1472.57,
    "total_amount": 12800.00,
}


@pytest.fixture(autouse=True)
def storage(tmp_asset_storage, settings):
    settings.MAX_UPLOAD_MB = 5
    settings.EXTRACTION_MAX_NEW_TOKENS = 16
    settings.STRUCTURED_OUTPUT_ATTEMPTS = 1


def sign_in(user) -> Client:
    client = Client()
    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302, response.content[:300]
    return client


@pytest.fixture
def upload(personas, system_context):
    def make(department=None, name="invoice.png", color=(200, 30, 60), by=None):
        return asset_upload_bytes(
            png_bytes((64, 48), color),
            name,
            department=department or personas.department_a,
            uploaded_by=by or personas.admin,
        )

    return make


@pytest.fixture
def stored_result(personas, upload, system_context):
    """``make(requested_by, department=None, batch=None)``: a valid VAT-invoice result as the model
    would have stored it (the demo model's random weights never write valid JSON)."""

    def make(requested_by=None, department=None, batch=None, asset=None, result=None):
        department = department or personas.department_a
        return vat_invoice_result(
            department=department,
            asset=asset or upload(department=department),
            result=result or INVOICE,
            requested_by=requested_by,
            batch=batch,
        )

    return make


def zh(message) -> str:
    """A message constant as the page shows it (the portal's default language is Chinese)."""
    with translation.override("zh-hans"):
        return str(message)


def url(name, *args, slug="finance"):
    return reverse(f"extraction:{name}", args=[slug, *args])


# --- the page, and a run on the real engine ---------------------------------------------------------


def test_the_page_lists_files_and_the_builtin_templates_from_the_start(personas, upload):
    asset = upload(name="发票-March.png")
    response = sign_in(personas.member).get(url("home"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "发票-March.png" in page and str(asset.pk) in page
    for slug in BUILTIN_TEMPLATES:
        assert zh(BUILTIN_DISPLAY[slug][0]) in page  # in the reader's language
    assert reverse("extraction:home", args=["finance"]) in page  # in the department's navigation


def test_a_member_runs_an_extraction_through_the_service_and_reads_it(personas, upload, api_engine):
    asset = upload()
    client = sign_in(personas.member)
    response = client.post(url("home"), {"template": "vat-invoice", "assets": [str(asset.pk)], "run": ""})
    assert response.status_code == 302, response.content[:500]
    with department_scope(personas.department_a):
        extraction = Extraction.objects.get(asset=asset)
    assert extraction.requested_by == personas.member and extraction.created_by_name == "bob"
    assert response["Location"] == url("result", extraction.pk)
    entry = AuditEntry.objects.filter(event_type="inference.extraction").order_by("-sequence").first()
    assert entry.actor_name == "bob" and entry.object_id == str(extraction.pk)
    page = client.get(response["Location"]).content.decode()
    # Every field of the template is listed (valid or not), and the page image of the file.
    for field in BUILTIN_TEMPLATES["vat-invoice"]["json_schema"]["properties"]:
        assert f'data-field="{field}"' in page
    # In the schema's required order first, whatever order the database kept its properties in.
    rows = re.findall(r'<tr data-field="([^"]+)"', page)
    assert rows[:3] == ["invoice_type", "invoice_number", "invoice_date"]
    assert url("page", extraction.pk, 1) in page
    image = client.get(url("page", extraction.pk, 1))
    assert image.status_code == 200 and image["Content-Type"] == "image/png"


def test_two_files_for_one_extraction_are_refused_with_the_choice_kept(personas, upload):
    first, second = upload(name="a.png"), upload(name="b.png", color=(10, 200, 10))
    response = sign_in(personas.member).post(
        url("home"), {"template": "vat-invoice", "assets": [str(first.pk), str(second.pk)], "run": ""}
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert zh(forms.ONE_FILE_ONLY) in page
    assert page.count("checked") >= 2  # nothing lost: both files stay chosen


def test_a_busy_model_is_a_clear_message_and_nothing_is_stored(personas, upload, serve_engine):
    asset = upload()
    serve_engine(None)  # the model is still loading
    response = sign_in(personas.member).post(
        url("home"), {"template": "vat-invoice", "assets": [str(asset.pk)], "run": ""}
    )
    assert response.status_code == 200
    assert "(model_unavailable)" in response.content.decode()
    with department_scope(personas.department_a):
        assert not Extraction.objects.exists()


# --- permissions ---------------------------------------------------------------------------------------


def test_another_departments_result_and_batch_answer_404(personas, stored_result, upload):
    theirs = stored_result(requested_by=personas.outsider, department=personas.department_b)
    with department_scope(personas.department_b):
        job = BatchJob.objects.create(
            department=personas.department_b, template_slug="vat-invoice", asset_ids=[], total=0
        )
    for user in (personas.member, personas.admin):
        client = sign_in(user)
        for path in (
            url("result", theirs.pk),
            url("page", theirs.pk, 1),
            url("batch", job.pk),
            url("batch_status", job.pk),
            url("batch_download", job.pk, "csv"),
        ):
            assert client.get(path).status_code == 404, path
        assert client.post(url("correct", theirs.pk), {"field_path": "total_amount", "value": "1"}).status_code == 404
        assert client.post(url("batch_cancel", job.pk)).status_code == 404
    # Through their own department's address it is still not theirs: not a member there.
    assert sign_in(personas.member).get(url("result", theirs.pk, slug="quality")).status_code == 404
    denials = [
        e for e in AuditEntry.objects.filter(event_type="access.denied") if e.details["action"] == "extraction.run"
    ]
    assert len(denials) >= 12


def test_a_file_not_found_at_run_time_is_refused_under_the_extraction_action(personas, upload, rf, system_context):
    """The form offers the department's own files; one gone (or another department's) by the time
    the run looks it up is refused as the action the page is bound to, and recorded."""
    from assets.selectors import AssetNotFound
    from inference.extraction import views

    theirs = upload(department=personas.department_b)
    templates_builtin_ensure(department=personas.department_a)
    with department_scope(personas.department_a):
        template = TaskTemplate.objects.get(department=personas.department_a, slug="vat-invoice")
    request = rf.post(url("home"))
    request.user, request.department = personas.member, personas.department_a
    with department_scope(personas.department_a), pytest.raises(AssetNotFound):
        views._run_one(request, template, str(theirs.pk), None)
    denial = AuditEntry.objects.filter(event_type="access.denied").latest("sequence")
    assert denial.actor_name == "bob" and denial.details == {
        "action": "extraction.run",
        "purpose": "extraction",
        "reason": "file of another department",
    }


def test_api_keys_never_reach_the_portal_pages(personas, stored_result, make_key):
    raw, key = make_key()
    for action in (Action.EXTRACTION_RUN, Action.EXTRACTION_REVIEW):
        decision = decide(key, action, department=personas.department_a)
        assert not decision.allowed and decision.message == NOT_FOR_API_KEYS
    extraction = stored_result(requested_by=personas.member)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    for path in (url("home"), url("result", extraction.pk)):
        response = client.get(path)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- corrections ----------------------------------------------------------------------------------------


def test_a_member_corrects_their_own_result_and_the_original_is_kept(personas, stored_result):
    extraction = stored_result(requested_by=personas.member)
    client = sign_in(personas.member)
    response = client.post(
        url("correct", extraction.pk),
        {"field_path": "total_amount", "value": "12,900.50", "note": "复核: 发票第二页"},
    )
    assert response.status_code == 302, response.content[:800]
    with department_scope(personas.department_a):
        stored = Extraction.objects.get(pk=extraction.pk)
        correction = ExtractionCorrection.objects.get(extraction=extraction)
    assert stored.result == INVOICE  # unchanged
    assert correction.value == 12900.5 and correction.field_path == "total_amount"
    assert correction.corrected_by == personas.member and correction.note == "复核: 发票第二页"
    # Sealed at rest under the extraction's key, like the result.
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT value, note FROM {ExtractionCorrection._meta.db_table} WHERE id = %s",  # noqa: S608
            [correction.pk.hex] if connection.vendor == "sqlite" else [correction.pk],
        )
        raw_value, raw_note = cursor.fetchone()
    assert raw_value.startswith("mmt1:") and raw_note.startswith("mmt1:") and "12900" not in raw_value
    entry = AuditEntry.objects.filter(event_type="extraction.correct").get()
    assert entry.actor_name == "bob" and entry.details["field"] == "total_amount"
    assert "12900" not in json.dumps(entry.details)  # no values in the trail
    page = client.get(url("result", extraction.pk)).content.decode()
    assert "12800.0" in page and "12900.5" in page  # original and corrected, side by side


def test_rule_messages_the_platform_wrote_are_shown_in_the_readers_language(personas, stored_result):
    """A built-in rule's message (stored in both languages in one string) and the grounding
    check's (stored in the language of the run) are shown in the reader's language; a message
    the department's administrator wrote is shown as written."""
    extraction = stored_result(requested_by=personas.member)  # 12 800 yuan: the built-in rule flags it
    with department_scope(personas.department_a):
        extraction.rule_outcomes = [
            *extraction.rule_outcomes,
            {
                "rule": 8,
                "field": "seller_name",
                "op": "grounded",
                "triggered": True,
                "outcome": "ungrounded",
                "message": zh("The value of {field} was not found in the document.").format(field="seller_name"),
            },
            {
                "rule": 9,
                "field": "tax_amount",
                "op": "gt",
                "value": 1,
                "triggered": True,
                "outcome": "check",
                "message": "请财务复核 (own words)",
            },
        ]
        extraction.save()
    client = sign_in(personas.member)
    for language, shown, hidden in (
        ("en", ["Above 10 000 yuan: a second approver signs.", "The value of seller_name was not found"], "价税合计"),
        (
            "zh-hans",
            ["价税合计超过 10000 元，需要第二审批人签字。", "字段 seller_name 的值在文档中未找到"],
            "a second approver signs",
        ),
    ):
        page = client.get(url("result", extraction.pk), HTTP_ACCEPT_LANGUAGE=language).content.decode()
        table = page.split('id="rule-outcomes"', 1)[1].split("</table>", 1)[0]
        assert all(text in table for text in shown) and hidden not in table, table
        assert "请财务复核 (own words)" in table


def test_grounded_fields_get_a_box_on_their_page_and_the_others_a_badge(personas, stored_result):
    extraction = stored_result(requested_by=personas.member)
    with department_scope(personas.department_a):
        extraction.usage = {
            "pages": [1],
            "grounding": {
                "total_amount": {"page": 1, "box": [16, 12, 48, 24], "source": "ocr", "width": 64, "height": 48},
                "seller_name": {"ungrounded": True},
            },
        }
        extraction.save()
    page = sign_in(personas.member).get(url("result", extraction.pk)).content.decode()
    assert 'data-field="total_amount" data-left="25.0" data-top="25.0" data-width="50.0" data-height="25.0"' in page
    assert 'class="badge grounded" data-box-field="total_amount"' in page
    seller = page.split('<tr data-field="seller_name">', 1)[1].split("</tr>", 1)[0]
    assert 'class="badge ungrounded"' in seller
    buyer = page.split('<tr data-field="buyer_name">', 1)[1].split("</tr>", 1)[0]
    assert "badge" not in buyer  # not looked for: neither


def test_each_page_shows_the_text_its_layer_read_for_the_reviewer(personas, stored_result, system_context):
    """Under each page image, the lines its text layer read (here the PDF's own text), so a
    reviewer compares values with the text; a file without a layer says so."""
    from assets.documents.jobs import text_layer_run
    from assets.documents.models import TextLayer, TextLayerStatus
    from tests.assets.test_retrieval_pdf import text_pdf

    pdf = asset_upload_bytes(
        text_pdf(["Invoice total 12800.00", "Seller ACME Trading Ltd"]),
        "bundle.pdf",
        department=personas.department_a,
        uploaded_by=personas.member,
    )
    with department_scope(personas.department_a):
        layer = TextLayer.objects.get(asset=pdf)
    text_layer_run(layer.pk)  # the upload's background job, run here to its end
    layer.refresh_from_db()
    assert layer.status == TextLayerStatus.DONE, (layer.failure, layer.failure_params)
    extraction = stored_result(requested_by=personas.member, asset=pdf)
    client = sign_in(personas.member)
    with translation.override("en"):
        page = client.get(url("result", extraction.pk), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    texts = dict(re.findall(r'<details class="page-text" data-page="(\d+)">(.*?)</details>', page, re.S))
    assert set(texts) == {"1", "2"}
    assert "Invoice total 12800.00" in texts["1"] and "ACME" not in texts["1"]
    assert "Seller ACME Trading Ltd" in texts["2"] and "the PDF&#x27;s own text" in texts["2"]
    assert 'id="no-text-layer"' not in page
    # An image whose layer is not made yet (workers are off in tests): the page says so.
    image_result = stored_result(requested_by=personas.member)
    page = client.get(url("result", image_result.pk)).content.decode()
    assert 'id="no-text-layer"' in page and 'class="page-text"' not in page
    with translation.override("zh-hans"):
        said = translation.gettext(
            "The file's text layer is not ready (or could not be made), so no value could be looked up in its text."
        )
    assert said.startswith("文件的文字层") and said in page


def test_the_pages_the_model_was_shown_are_the_pages_on_view(personas, stored_result, system_context):
    """usage.pages (a PDF's retrieved pages) are the page images shown; each renders on its own."""
    from tests.assets.samples import pdf_bytes

    pdf = asset_upload_bytes(
        pdf_bytes(pages=5), "bundle.pdf", department=personas.department_a, uploaded_by=personas.member
    )
    extraction = stored_result(requested_by=personas.member, asset=pdf)
    with department_scope(personas.department_a):
        extraction.usage = {"pages": [2, 4]}
        extraction.save()
    client = sign_in(personas.member)
    page = client.get(url("result", extraction.pk)).content.decode()
    assert re.findall(r'id="page-(\d+)"', page) == ["2", "4"]
    image = client.get(url("page", extraction.pk, 4))
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert client.get(url("page", extraction.pk, 6)).status_code == 404  # the file has 5
    views = [e.details for e in AuditEntry.objects.filter(event_type="asset.view") if e.details.get("view") == "page"]
    assert [(d["page"], d["extraction"]) for d in views] == [(4, str(extraction.pk))]


def test_a_bad_value_is_shown_and_nothing_is_stored(personas, stored_result):
    extraction = stored_result(requested_by=personas.member)
    response = sign_in(personas.member).post(
        url("correct", extraction.pk), {"field_path": "total_amount", "value": "lots"}
    )
    assert response.status_code == 400
    assert zh(forms.VALUE_NOT_NUMBER) in response.content.decode()
    with department_scope(personas.department_a):
        assert not ExtractionCorrection.objects.exists()


@pytest.mark.parametrize("value", ["1e999999999", "Infinity", "-NaN", "sNaN", "1" * 31, "1,2345", "12 800"])
def test_a_number_is_plain_digits_and_anything_else_is_refused_at_once(personas, stored_result, value):
    """Decimal("1e999999999") parses, and making an int of it never finishes: a reviewer's number
    is digits, an optional sign, point and thousands commas, or it is refused."""
    extraction = stored_result(requested_by=personas.member)
    response = sign_in(personas.member).post(
        url("correct", extraction.pk), {"field_path": "total_amount", "value": value}
    )
    assert response.status_code == 400
    assert zh(forms.VALUE_NOT_NUMBER) in response.content.decode()
    with department_scope(personas.department_a):
        assert not ExtractionCorrection.objects.exists()


def test_the_correction_form_reads_numbers_by_the_schema_type():
    schema = {"properties": {"count": {"type": "integer"}, "amount": {"type": "number"}}}

    def clean(path, value):
        form = forms.CorrectionForm({"field_path": path, "value": value}, paths=["count", "amount"], schema=schema)
        return form.cleaned_data["value"] if form.is_valid() else form.errors["value"][0]

    assert clean("amount", "12,900.50") == 12900.5 and clean("amount", "12800.00") == 12800
    assert clean("amount", "-.5") == -0.5 and clean("count", "+3") == 3
    assert clean("count", "3.5") == str(forms.VALUE_NOT_WHOLE)
    assert clean("amount", "1e3") == str(forms.VALUE_NOT_NUMBER)
    # The rules editor reads its numbers the same way: an exponent stays text, refused as no number.
    assert forms.plain_number("1e999999999") is None and forms.plain_number("1,000,000") == 1000000
    # Digits as a Chinese input method types them (full width) are numbers too; every character
    # the pattern takes for a digit is one Decimal reads (checked over all of Unicode here).
    assert clean("amount", "１２,９００.５０") == 12900.5 and clean("count", "３") == 3
    digits = "".join(chr(point) for point in range(0x110000) if re.fullmatch(r"\d", chr(point)))
    assert all(forms.plain_number(digit * 3) is not None for digit in digits)


def test_a_key_the_model_added_is_shown_but_neither_corrected_nor_its_grounding_read(personas, stored_result):
    """Correctable fields are the template's: a key the model made up is content read from the
    file, and a correction's field is stored and audited in the clear. Grounding and pages come
    from usage only, never from the model's answer."""
    invented = "张三 110101199003074512"
    result = {
        **INVOICE,
        invented: "x",
        "grounding": {"total_amount": {"page": 1, "box": [16, 12, 48, 24], "source": "ocr", "width": 64, "height": 48}},
        "pages": [3],
    }
    extraction = stored_result(requested_by=personas.member, result=result)
    client = sign_in(personas.member)
    page = client.get(url("result", extraction.pk)).content.decode()
    row = page.split(f'<tr data-field="{invented}">', 1)[1].split("</tr>", 1)[0]
    assert "edit-field" not in row  # shown, with no Correct button
    total = page.split('<tr data-field="total_amount">', 1)[1].split("</tr>", 1)[0]
    assert "edit-field" in total and "badge grounded" not in total and 'id="page-3"' not in page
    response = client.post(url("correct", extraction.pk), {"field_path": invented, "value": "y"})
    assert response.status_code == 400
    with department_scope(personas.department_a):
        assert not ExtractionCorrection.objects.exists()
    assert not AuditEntry.objects.filter(event_type="extraction.correct").exists()


def test_who_may_not_review_is_refused_before_the_value_is_read(personas, stored_result):
    admins_result = stored_result(requested_by=personas.admin)
    response = sign_in(personas.member).post(
        url("correct", admins_result.pk), {"field_path": "total_amount", "value": "1e999999999"}
    )
    assert response.status_code == 403  # not 400: the value was never parsed
    denial = AuditEntry.objects.filter(event_type="access.denied").latest("sequence")
    assert denial.details["action"] == "extraction.review"


def test_only_the_owner_or_the_department_administrator_corrects(personas, stored_result):
    admins_result = stored_result(requested_by=personas.admin)
    assert (
        sign_in(personas.member)
        .post(url("correct", admins_result.pk), {"field_path": "seller_name", "value": "x"})
        .status_code
        == 403
    )
    denials = AuditEntry.objects.filter(event_type="access.denied")
    assert any(entry.details["action"] == "extraction.review" for entry in denials)
    api_result = stored_result(requested_by=None)  # an API key's result: the administrator's to review
    assert (
        sign_in(personas.member)
        .post(url("correct", api_result.pk), {"field_path": "seller_name", "value": "x"})
        .status_code
        == 403
    )
    response = sign_in(personas.admin).post(
        url("correct", admins_result.pk), {"field_path": "seller_name", "value": "甲公司"}
    )
    assert response.status_code == 302
    # The member's page offers no correction form on a result that is not theirs.
    page = sign_in(personas.member).get(url("result", admins_result.pk)).content.decode()
    assert 'id="correction-form"' not in page


# --- batches and exports -------------------------------------------------------------------------------


def test_a_batch_runs_with_status_and_its_exports_neutralise_formulas(
    personas, upload, stored_result, api_engine, django_capture_on_commit_callbacks
):
    files = [upload(name=f"file-{index}.png", color=(index * 60, 20, 20)) for index in range(3)]
    client = sign_in(personas.member)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            url("home"), {"template": "vat-invoice", "assets": [str(f.pk) for f in files], "batch": ""}
        )
    assert response.status_code == 302 and len(callbacks) == 1
    with department_scope(personas.department_a):
        job = BatchJob.objects.get()
    assert job.requested_by == personas.member and job.created_by_name == "bob"
    status = client.get(url("batch_status", job.pk)).json()
    assert [f["status"] for f in status["files"]] == ["pending"] * 3 and not status["finished"]
    batch_run(job.pk, engine=api_engine)  # what the runner thread does
    status = client.get(url("batch_status", job.pk)).json()
    assert status["finished"] and status["processed"] == 3
    assert all(f["status"] in ("valid", "invalid", "failed") and f["url"] for f in status["files"])
    assert [f["name"] for f in status["files"]] == ["file-0.png", "file-1.png", "file-2.png"]

    # A result of the batch with text a spreadsheet would run, and a correction starting with '+'.
    with department_scope(personas.department_a):
        first = Extraction.objects.filter(batch=job, asset=files[0]).get()
        first.status, first.result = ExtractionStatus.VALID, INVOICE
        first.save()
    response = client.post(url("correct", first.pk), {"field_path": "buyer_name", "value": "+cmd|' /C calc'!A0"})
    assert response.status_code == 302  # the member started the batch: their results to correct

    rows = list(csv.reader(io.StringIO(client.get(url("batch_download", job.pk, "csv")).content.decode("utf-8-sig"))))
    header, row = rows[0], rows[1]
    assert row[header.index("seller_name")] == "'" + INVOICE["seller_name"]
    assert row[header.index("buyer_name")] == INVOICE["buyer_name"]
    assert row[header.index("buyer_name.corrected")] == "'+cmd|' /C calc'!A0"
    assert row[header.index("total_amount")] == "12800.0"
    assert len(rows) == 4

    from openpyxl import load_workbook

    response = client.get(url("batch_download", job.pk, "xlsx"))
    sheet = load_workbook(io.BytesIO(response.content)).active
    values = list(sheet.values)
    header = list(values[0])
    cell = sheet.cell(row=2, column=header.index("seller_name") + 1)
    assert cell.data_type == "s" and cell.value == "'" + INVOICE["seller_name"]
    assert values[1][header.index("buyer_name.corrected")] == "'+cmd|' /C calc'!A0"
    assert values[1][header.index("total_amount")] == 12800.0  # numbers stay numbers

    lines = [json.loads(line) for line in client.get(url("batch_download", job.pk, "jsonl")).content.splitlines()]
    assert lines[0]["result"]["buyer_name"] == INVOICE["buyer_name"]  # the original
    assert lines[0]["corrections"]["buyer_name"]["value"] == "+cmd|' /C calc'!A0"
    views = AuditEntry.objects.filter(event_type="asset.view")
    assert sum(entry.details.get("view") == "batch_export" for entry in views) == 3


def test_cancelling_a_queued_batch(personas, upload, django_capture_on_commit_callbacks):
    asset = upload()
    client = sign_in(personas.member)
    with django_capture_on_commit_callbacks(execute=False):
        client.post(url("home"), {"template": "vat-invoice", "assets": [str(asset.pk)], "batch": ""})
    with department_scope(personas.department_a):
        job = BatchJob.objects.get()
    assert client.post(url("batch_cancel", job.pk)).status_code == 302
    job.refresh_from_db()
    assert job.cancel_requested and job.status == "cancelled"
    assert AuditEntry.objects.filter(event_type="inference.batch_cancel", actor_name="bob").exists()


def test_only_who_started_a_batch_or_the_department_administrator_cancels_it(
    personas, upload, django_capture_on_commit_callbacks
):
    asset = upload()
    admin, member = sign_in(personas.admin), sign_in(personas.member)
    with django_capture_on_commit_callbacks(execute=False):
        admin.post(url("home"), {"template": "vat-invoice", "assets": [str(asset.pk)], "batch": ""})
        member.post(url("home"), {"template": "vat-invoice", "assets": [str(asset.pk)], "batch": ""})
    with department_scope(personas.department_a):
        admins_job = BatchJob.objects.get(requested_by=personas.admin)
        members_job = BatchJob.objects.get(requested_by=personas.member)
    # The member sees no Cancel on the administrator's batch, and a forged post is refused.
    assert 'id="batch-cancel"' not in member.get(url("batch", admins_job.pk)).content.decode()
    assert 'id="batch-cancel"' in member.get(url("batch", members_job.pk)).content.decode()
    assert member.post(url("batch_cancel", admins_job.pk)).status_code == 403
    admins_job.refresh_from_db()
    assert not admins_job.cancel_requested and admins_job.status == "queued"
    denial = AuditEntry.objects.filter(event_type="access.denied", object_id=str(admins_job.pk)).get()
    assert denial.details["action"] == "batch.cancel" and denial.actor_name == "bob"
    # The department administrator stops anyone's batch of the department.
    assert 'id="batch-cancel"' in admin.get(url("batch", members_job.pk)).content.decode()
    assert admin.post(url("batch_cancel", members_job.pk)).status_code == 302
    members_job.refresh_from_db()
    assert members_job.cancel_requested and members_job.status == "cancelled"


# --- the template editor's rules ------------------------------------------------------------------------


def _template_post(rows, **fields):
    data = {
        "name": "Receipt",
        "instruction": "Read the receipt.",
        "json_schema": '{"type": "object"}',
        "is_active": "on",
    }
    data.update(fields)
    for name in ("field", "op", "value", "outcome", "message"):
        data[f"rule_{name}"] = [row.get(name, "") for row in rows]
    return data


def test_the_rules_editor_shows_each_rows_problem_and_saves_nothing(personas):
    client = sign_in(personas.admin)
    templates_builtin_ensure(department=personas.department_a)
    with department_scope(personas.department_a):
        template = TaskTemplate.objects.get(slug="vat-invoice")
    before = list(template.rules)
    rows = [
        {"field": "total_amount", "op": "gt", "value": "a lot", "outcome": "second_approver"},
        {"field": "seller_tax_id", "op": "matches", "value": "([", "outcome": "bad_id"},
        {"field": "", "op": "eq", "value": "1", "outcome": ""},
    ]
    response = client.post(reverse("chat:template_edit", args=["finance", template.pk]), _template_post(rows))
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('class="rule-row has-errors"') == 3
    assert zh(forms.RULE_NEEDS_NUMBER) in page and zh(forms.RULE_NEEDS_PATTERN) in page
    assert zh(forms.RULE_NEEDS_FIELD) in page and zh(forms.RULE_NEEDS_OUTCOME) in page
    assert 'value="a lot"' in page  # nothing lost
    template.refresh_from_db()
    assert template.rules == before


def test_the_rules_editor_saves_rules_that_validate(personas):
    client = sign_in(personas.admin)
    rows = [
        {"field": "total", "op": "gte", "value": "5,000", "outcome": "review", "message": "大额"},
        {"field": "category", "op": "in", "value": "fuel, 餐饮", "outcome": "expense_check"},
        {},  # an empty row is ignored
    ]
    response = client.post(reverse("chat:templates", args=["finance"]), _template_post(rows))
    assert response.status_code == 302, response.content[:800]
    with department_scope(personas.department_a):
        template = TaskTemplate.objects.get(name="Receipt")
    assert template.rules == [
        {"field": "total", "op": "gte", "value": 5000, "outcome": "review", "message": "大额"},
        {"field": "category", "op": "in", "value": ["fuel", "餐饮"], "outcome": "expense_check"},
    ]
    changes = AuditEntry.objects.filter(event_type="task_template.change")
    assert any(entry.details.get("action") == "rules" for entry in changes)
    page = client.get(reverse("chat:template_edit", args=["finance", template.pk])).content.decode()
    assert 'value="fuel, 餐饮"' in page


def test_the_template_list_shows_the_builtin_templates_from_the_start(personas):
    page = sign_in(personas.admin).get(reverse("chat:templates", args=["finance"])).content.decode()
    for slug in BUILTIN_TEMPLATES:
        assert zh(BUILTIN_DISPLAY[slug][0]) in page and zh(BUILTIN_DISPLAY[slug][1])[:20] in page
    # Renamed by the department's administrator: its own name is shown.
    with department_scope(personas.department_a):
        TaskTemplate.objects.filter(slug="vat-invoice").update(name="Rechnung")
    page = sign_in(personas.admin).get(reverse("chat:templates", args=["finance"])).content.decode()
    assert ">Rechnung</a>" in page and f">{zh(BUILTIN_DISPLAY['vat-invoice'][0])}</a>" not in page


def test_the_built_in_templates_are_created_once_audited_and_a_racing_request_is_harmless(personas, monkeypatch):
    """Two first visits at once: the one that loses the insert carries on (no 500), nothing is
    created twice, and each creation is recorded once, by the system."""
    from compliance.events import EventType

    assert templates_builtin_ensure(department=personas.department_a) == len(BUILTIN_TEMPLATES)
    created = AuditEntry.objects.filter(event_type=EventType.TASK_TEMPLATE_CHANGE, actor_type="system")
    assert sorted(entry.details["action"] for entry in created) == ["create"] * len(BUILTIN_TEMPLATES)
    real_filter = TaskTemplate.objects.filter

    def stale(*args, **kwargs):  # what a request that read before the other one's insert sees
        found = real_filter(*args, **kwargs)
        return found.none() if "slug__in" in kwargs else found

    monkeypatch.setattr(TaskTemplate.objects, "filter", stale)
    assert templates_builtin_ensure(department=personas.department_a) == 0
    monkeypatch.undo()
    with department_scope(personas.department_a):
        assert TaskTemplate.objects.filter(slug__in=list(BUILTIN_TEMPLATES)).count() == len(BUILTIN_TEMPLATES)
    assert created.count() == len(BUILTIN_TEMPLATES)
