"""The portal's extraction in a real browser (Debian's Chromium, headless, driven by the playwright
package) against the platform served on loopback with the demo model: a member uploads an image on
the extraction page, runs the built-in VAT-invoice template, reads the result at 1440 and 390 px
(no sideways scroll) in Chinese and English, corrects a field, sees a field's box over the spot of
the page it was found at (at both widths) and marked from its row, runs a batch of three files while
its per-file status updates, and downloads its CSV and XLSX. Screenshots go to the test's temporary
directory.

The demo model's random weights never write valid JSON, so every result is ``invalid``: the page
still lists the template's fields, and the reviewer fills one in — what a reviewer does with an
unusable answer."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tests.chat.conftest import png_bytes
from tests.support.browser import FINANCE_AND_BOB, NO_SIDEWAYS_SCROLL, PASSWORD, WIDTHS, browser_api, chromium, sign_in

pytestmark = pytest.mark.slow

SET_UP = (
    FINANCE_AND_BOB
    + """
dora = User(username="dora")
dora.set_password("Correct-Horse-9")
dora.save()
membership_add(user=dora, department=finance, role="admin", acting_user="system")
print("ok")
"""
)

AUDIT_QUERY = """
import json
from compliance.models import AuditEntry
rows = AuditEntry.objects.filter(actor_name="bob", event_type__in=["inference.extraction", "extraction.correct",
    "inference.batch_create"]).order_by("sequence")
print(json.dumps([e.event_type for e in rows]))
"""

RULES_QUERY = """
import json
from departments.tenancy import all_departments
from inference.models import TaskTemplate
with all_departments(reason="test"):
    print(json.dumps(TaskTemplate.objects.get(slug="vat-invoice").rules, sort_keys=True, ensure_ascii=False))
"""

GROUND_LAST_RESULT = """
from departments.tenancy import all_departments
from inference.extraction.models import Extraction
with all_departments(reason="test"):
    extraction = Extraction.objects.order_by("-created_at").first()
    box = {"page": 1, "box": [30, 18, 90, 54], "source": "ocr", "width": 121, "height": 90}
    extraction.usage = {**(extraction.usage or {}), "pages": [1], "grounding": {"total_amount": box}}
    extraction.save(update_fields=["usage"])
print(extraction.pk)
"""

# Where the box is over its page image, as fractions of the image: left, top, width, height.
BOX_OVER_IMAGE = """() => {
  const image = document.querySelector('#page-1 .page-frame img').getBoundingClientRect();
  const box = document.querySelector('#page-1 .field-box[data-field=total_amount]').getBoundingClientRect();
  return [(box.left - image.left) / image.width, (box.top - image.top) / image.height,
          box.width / image.width, box.height / image.height];
}"""

TEXTS = {
    "zh-hans": {"extract": "提取", "invalid": "无效", "done": "已完成", "correct": "更正"},
    "en": {"extract": "Extract", "invalid": "Invalid", "done": "Done", "correct": "Correct"},
}


def test_extraction_correction_and_batch_in_a_real_browser(live_server_factory, shared_demo_model_dir, tmp_path, shots):
    sync_api = browser_api()
    server = live_server_factory(
        model_path=shared_demo_model_dir,
        env={"MODEL_READINESS_CHECK": "true", "EXTRACTION_MAX_NEW_TOKENS": "16", "STRUCTURED_OUTPUT_ATTEMPTS": "1"},
    )
    assert server.shell(SET_UP) == "ok"
    server.wait_for("/readyz", timeout=180)
    files = []
    for index, color in enumerate([(210, 40, 40), (40, 160, 60), (40, 60, 200), (220, 200, 40)]):
        path = tmp_path / f"invoice-{index}.png"
        path.write_bytes(png_bytes(color, (120 + index, 90)))
        files.append(path)

    def no_sideways_scroll(page, what: str) -> None:
        widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert page.evaluate(NO_SIDEWAYS_SCROLL), f"{what} scrolls sideways: {widths}"

    def both_widths(page, name: str) -> None:
        for width_name, viewport in WIDTHS.items():
            page.set_viewport_size(viewport)
            no_sideways_scroll(page, f"{name} at {width_name}")
            page.screenshot(path=str(shots / f"{name}-{width_name}.png"), full_page=True)
        page.set_viewport_size(WIDTHS["desktop"])

    with chromium(sync_api) as browser:
        context = browser.new_context(locale="zh-CN", viewport=WIDTHS["desktop"], accept_downloads=True)
        page = context.new_page()
        sign_in(page, server.base_url, "bob", PASSWORD)
        page.wait_for_url(f"{server.base_url}/d/finance/")

        for language in ("zh-hans", "en"):
            texts = TEXTS[language]
            if language == "en":
                page.click("#user-menu > summary")
                page.click("#user-menu .lang button[value=en]")
                page.wait_for_function("() => document.documentElement.lang === 'en'")
            page.click("[data-nav=extract]")  # from the department's navigation
            page.wait_for_selector("#extract-form")
            assert page.evaluate("() => document.documentElement.lang") == language
            assert page.inner_text("#run-one").strip() == texts["extract"]
            both_widths(page, f"extract-{language}")

            # A new file, uploaded here with its progress: it joins the grid, chosen.
            upload = files[0 if language == "zh-hans" else 1]
            page.set_input_files("#extract-file-input", str(upload))
            page.wait_for_selector("#extract-upload-progress li.ok")
            page.wait_for_function("() => document.querySelectorAll('#file-grid input:checked').length === 1")
            page.select_option("#id_template", "vat-invoice")
            page.click("#run-one")
            page.wait_for_selector("#result-fields", timeout=120_000)
            assert page.inner_text("#result-status").strip().startswith(texts["invalid"])
            fields = page.eval_on_selector_all("#result-fields tbody tr", "rows => rows.map(r => r.dataset.field)")
            assert "invoice_number" in fields and "total_amount" in fields
            page.wait_for_function(
                "() => [...document.querySelectorAll('.page-frame img')].every(i => i.complete && i.naturalWidth > 0)"
            )
            both_widths(page, f"result-{language}")

            # The reviewer fills in a field the model did not give; the extracted value stays.
            page.click("#result-fields tr[data-field=invoice_number] button.edit-field")
            assert page.input_value("#correction-form select[name=field_path]") == "invoice_number"
            page.fill("#correction-form [name=value]", f"0441987{len(language)}")
            page.fill("#correction-form [name=note]", "复核" if language == "zh-hans" else "checked")
            page.click("#correction-form button[type=submit]")
            page.wait_for_selector("#result-fields tr[data-field=invoice_number] td.corrected .small")
            row = page.inner_text("#result-fields tr[data-field=invoice_number]")
            assert f"0441987{len(language)}" in row and "bob" in row
            assert page.inner_text("#result-fields tr[data-field=invoice_number] td.extracted").strip() == "—"
            both_widths(page, f"corrected-{language}")

        # A field's box sits over the very spot of the page image it was found at, at both
        # widths, and the field's "page 1" badge marks it (the demo model grounds nothing, so
        # the platform's grounding record is written into the last result's usage here).
        result_id = server.shell(GROUND_LAST_RESULT).splitlines()[-1]
        assert result_id in page.url
        page.reload()
        page.wait_for_selector("#page-1 .field-box[data-field=total_amount]")
        page.wait_for_function("() => document.querySelector('#page-1 .page-frame img').naturalWidth > 0")
        expected = [30 / 121, 18 / 90, 60 / 121, 36 / 90]
        for width_name, viewport in WIDTHS.items():
            page.set_viewport_size(viewport)
            placed = page.evaluate(BOX_OVER_IMAGE)
            assert all(abs(got - want) < 0.02 for got, want in zip(placed, expected, strict=True)), (
                width_name,
                placed,
                expected,
            )
            assert page.is_visible("#page-1 .field-box[data-field=total_amount] .field-box-label")
            page.screenshot(path=str(shots / f"field-box-{width_name}.png"), full_page=True)
        page.set_viewport_size(WIDTHS["desktop"])
        box = "#page-1 .field-box[data-field=total_amount]"
        assert "active" not in page.get_attribute(box, "class")
        page.click("#result-fields tr[data-field=total_amount] [data-box-field=total_amount]")
        page.wait_for_function(f"() => document.querySelector('{box}').classList.contains('active')")

        # A batch of three new files, uploaded with progress, each followed as it runs.
        page.click("[data-nav=extract]")
        page.wait_for_selector("#extract-form")
        page.set_input_files("#extract-file-input", [str(path) for path in files[1:]])
        page.wait_for_function("() => document.querySelectorAll('#extract-upload-progress li.ok').length === 3")
        page.eval_on_selector_all("#file-grid input:checked", "boxes => boxes.forEach(b => { b.checked = false; })")
        for path in files[1:]:
            page.check(f"#file-grid label:has-text('{path.name}') input")
        page.click("#run-batch")
        page.wait_for_selector("#batch-files")
        assert len(page.query_selector_all("#batch-files tbody tr")) == 3
        page.wait_for_function(
            "(done) => document.getElementById('batch-status').textContent.trim() === done",
            arg=TEXTS["en"]["done"],
            timeout=120_000,
        )
        assert page.inner_text("#batch-count").strip() == "3/3"
        assert not page.query_selector("#batch-cancel")  # gone once the batch ended
        assert len(page.query_selector_all("#batch-files tbody a")) == 3
        both_widths(page, "batch-en")

        with page.expect_download() as download:
            page.click("#batch-downloads a[data-format=csv]")
        rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8-sig"))))
        assert len(rows) == 4 and "invoice_number.corrected" in rows[0]
        assert sorted(row[rows[0].index("file")] for row in rows[1:]) == [p.name for p in files[1:]]
        with page.expect_download() as download:
            page.click("#batch-downloads a[data-format=xlsx]")
        from openpyxl import load_workbook

        assert download.value.suggested_filename.endswith(".xlsx")
        sheet = load_workbook(io.BytesIO(Path(download.value.path()).read_bytes())).active
        assert sheet.max_row == 4 and sheet.cell(row=1, column=1).value == "id"
        context.close()

        # The department administrator's rules editor at phone width: a row added in the page,
        # refused with its reason beside it, nothing lost; then corrected and saved.
        context = browser.new_context(locale="en-US", viewport=WIDTHS["phone"])
        page = context.new_page()
        sign_in(page, server.base_url, "dora", PASSWORD)
        page.wait_for_url(f"{server.base_url}/d/finance/")
        page.goto(f"{server.base_url}/d/finance/chat/templates/")
        page.click("#template-table a:has-text('VAT invoice')")  # built in, in the reader's language
        page.wait_for_selector("#rules-editor")
        rows_before = len(page.query_selector_all("#rule-rows tr"))
        page.click("#rule-add")
        assert len(page.query_selector_all("#rule-rows tr")) == rows_before + 1
        new_row = page.locator("#rule-rows tr").last
        new_row.locator("input[name=rule_field]").fill("tax_amount")
        new_row.locator("select[name=rule_op]").select_option("gte")
        new_row.locator("input[name=rule_value]").fill("a lot")
        new_row.locator("input[name=rule_outcome]").fill("tax_review")
        no_sideways_scroll(page, "the rules editor at phone width")
        page.click(".template-form button.primary")
        page.wait_for_selector("#rules-editor .rule-row.has-errors")
        assert "needs a number" in page.inner_text("#rules-editor .rule-row.has-errors")
        assert page.locator("#rules-editor .rule-row.has-errors input[name=rule_value]").input_value() == "a lot"
        no_sideways_scroll(page, "the rules editor's errors at phone width")
        page.screenshot(path=str(shots / "rules-editor-en-phone.png"), full_page=True)
        page.locator("#rules-editor .rule-row.has-errors input[name=rule_value]").fill("2000")
        page.click(".template-form button.primary")
        page.wait_for_selector("#template-table")
        context.close()

    events = server.shell(AUDIT_QUERY)
    assert events.count("inference.extraction") == 5 and events.count("extraction.correct") == 2
    assert "inference.batch_create" in events
    rules = server.shell(RULES_QUERY)
    assert rules.endswith('{"field": "tax_amount", "op": "gte", "outcome": "tax_review", "value": 2000}]'), rules
