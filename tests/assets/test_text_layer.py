"""The text layer of every page: made at upload in the background, from the PDF's own
text or by OCR (PP-OCRv4, the real model), sealed at rest, shredded with the file, within limits.

Documents are generated (tests/assets/text_layer_documents.py) with the WenQuanYi font. The jobs
run on the real worker pool (``TEXT_LAYER_WORKERS=1``), committed (``transactional_db``), and the
tests wait for them with a deadline.
"""

from __future__ import annotations

import os

import pytest
from django.db import connection

from assets.documents.jobs import RUNNER, text_layer_look, text_layer_run
from assets.documents.models import TextLayer, TextLayerStatus
from assets.documents.pages import TextSource
from assets.documents.selectors import document_text
from assets.models import Asset
from assets.services import asset_delete
from compliance.models import AuditEntry
from departments.tenancy import all_departments, department_scope
from tests.assets.damaged_samples import pdf_with_pages
from tests.assets.samples import pdf_many_pages
from tests.assets.text_layer_documents import (
    INVOICE_LINES,
    born_digital_pdf,
    page_image,
    png_of,
    scanned_pdf,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

DEADLINE = 90.0  # seconds for one small document on a loaded 2-core machine


@pytest.fixture(autouse=True)
def text_workers(text_layer_worker, settings):
    settings.TEXT_LAYER_MAX_PAGES = 50
    settings.OCR_PAGE_SECONDS = 120
    settings.OCR_DOCUMENT_SECONDS = 600
    settings.TEXT_LAYER_MAX_PAGE_PIXELS = 4_000_000


def finished_layer(asset: Asset, timeout: float = DEADLINE) -> TextLayer:
    def finished():
        with department_scope(asset.department_id):
            layer = TextLayer.objects.get(asset=asset)
        return layer if layer.is_finished else None

    return wait_until(finished, timeout=timeout, interval=0.2, message=f"text layer of {asset.pk} did not finish")


def overlap(a, b) -> float:
    """Intersection over union of two boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def squash(text: str) -> str:
    return "".join(text.split())


def find_line(page, needle: str):
    return next((line for line in page.lines if squash(needle) in squash(line.text)), None)


def expected_boxes(dpi: int, page_side: int):
    """Where page_image drew each line, in the pixels of the page image the boxes refer to."""
    image, boxes = page_image(dpi=dpi)
    factor = page_side / max(image.size)
    return [tuple(value * factor for value in box) for box in boxes]


def text_layer_entries(asset: Asset) -> list[dict]:
    with all_departments(reason="test reads the audit trail"):
        entries = AuditEntry.objects.filter(event_type="asset.update", object_id=str(asset.pk)).order_by("pk")
        return [entry.details["text_layer"] for entry in entries if "text_layer" in entry.details]


def test_born_digital_pdf_gives_its_own_text_with_boxes_where_the_words_are(upload):
    data, _positions = born_digital_pdf()
    asset = upload(data, "invoice.pdf")
    layer = finished_layer(asset)
    assert layer.status == TextLayerStatus.DONE, layer.failure
    with department_scope(asset.department_id):
        document = document_text(asset)
    (page,) = document.pages
    assert page.source == TextSource.PDF and page.usable
    assert (page.width, page.height) == (1131, 1600)  # the page image at its default size (A4)
    assert [line.text for line in page.lines] == list(INVOICE_LINES)
    expected = expected_boxes(dpi=150, page_side=1600)
    for line, box in zip(page.lines, expected, strict=True):
        assert overlap(line.box, box) > 0.5, (line.text, line.box, box)
    assert layer.sources == {"pdf": 1, "ocr": 0, "office": 0, "none": 0}


def test_scanned_pdf_is_read_by_ocr_chinese_and_english(upload):
    asset = upload(scanned_pdf(2), "scan.pdf")
    layer = finished_layer(asset)
    assert layer.status == TextLayerStatus.DONE, layer.failure
    assert (layer.pages_done, layer.pages_total) == (2, 2)
    with department_scope(asset.department_id):
        document = document_text(asset)
    expected = expected_boxes(dpi=150, page_side=1600)
    for page in document.pages:
        assert page.source == TextSource.OCR
        for index in (0, 5):  # 增值税专用发票 No.12345678, 合计金额：1,234.56元
            line = find_line(page, INVOICE_LINES[index])
            assert line is not None, (INVOICE_LINES[index], [line.text for line in page.lines])
            assert line.confidence > 0.8
            assert overlap(line.box, expected[index]) > 0.5, (line.box, expected[index])
        english = find_line(page, "1,234.56 CNY")
        assert english is not None and overlap(english.box, expected[6]) > 0.5
    # The job's start and end are system events with counts, never any text.
    summaries = text_layer_entries(asset)
    assert [summary["status"] for summary in summaries] == ["running", "done"]
    assert summaries[-1]["sources"]["ocr"] == 2
    with all_departments(reason="test reads the audit trail"):
        details = [str(entry.details) for entry in AuditEntry.objects.filter(object_id=str(asset.pk))]
    assert not any("1,234.56" in text or "发票" in text for text in details)


def test_an_image_is_one_page_read_by_ocr(upload):
    image, _boxes = page_image(dpi=100)
    asset = upload(png_of(image), "photo.png")
    layer = finished_layer(asset)
    assert layer.status == TextLayerStatus.DONE, layer.failure
    with department_scope(asset.department_id):
        (page,) = document_text(asset).pages
    assert page.source == TextSource.OCR
    assert (page.width, page.height) == image.size  # under 1600 px: not scaled
    line = find_line(page, "合计金额")
    assert line is not None and "1,234.56" in line.text
    assert overlap(line.box, expected_boxes(dpi=100, page_side=max(image.size))[5]) > 0.5


def test_a_page_that_does_not_decode_is_marked_unusable(upload):
    asset = upload(pdf_with_pages(8, broken=frozenset({6})), "bundle.pdf")  # the upload checks pages 1-4
    assert asset.unusable_pages == []
    layer = finished_layer(asset)
    assert layer.status == TextLayerStatus.DONE, layer.failure
    with department_scope(asset.department_id):
        document = document_text(asset)
        assert Asset.objects.get(pk=asset.pk).unusable_pages == [6]
    assert [page.usable for page in document.pages] == [True] * 5 + [False] + [True] * 2
    assert document.page(6).lines == () and document.page(7).source == TextSource.NONE  # blank pages
    assert text_layer_entries(asset)[-1]["unusable"] == 1


@pytest.mark.parametrize(
    ("limits", "code"),
    [
        ({"TEXT_LAYER_MAX_PAGES": 3}, "too_many_pages"),
        ({"OCR_PAGE_SECONDS": 0.001}, "page_too_slow"),
        ({"OCR_DOCUMENT_SECONDS": 0}, "document_too_slow"),
        ({"TEXT_LAYER_MAX_PAGE_PIXELS": 1000}, "page_too_large"),
    ],
)
def test_a_document_over_a_limit_fails_with_its_reason_never_stuck(upload, settings, limits, code):
    for name, value in limits.items():
        setattr(settings, name, value)
    asset = upload(scanned_pdf(4) if code == "too_many_pages" else scanned_pdf(1), "big.pdf")
    layer = finished_layer(asset)
    assert layer.status == TextLayerStatus.FAILED
    assert layer.failure == code
    assert layer.pages is None
    with department_scope(asset.department_id):
        assert document_text(asset) is None
    from assets.documents.api import text_layer_status

    message = text_layer_status(layer)["failure"]["message"]
    assert message and "%(" not in message
    if code == "too_many_pages":
        assert "4" in message and "3" in message
    assert text_layer_entries(asset)[-1] == {
        "status": "failed",
        "reason": code,
        "pages": layer.pages_total,
        "pages_done": layer.pages_done,
    }


def _huge_blank_pdf(pages: int) -> bytes:
    """Pages of 14 400 pt square (PDF's largest, 5 m a side), nothing on them."""
    import io

    import pypdfium2 as pdfium

    document = pdfium.PdfDocument.new()
    for _ in range(pages):
        document.new_page(14400, 14400).close()
    output = io.BytesIO()
    document.save(output)
    document.close()
    return output.getvalue()


def test_huge_blank_pages_cost_no_ocr_and_never_stick(upload, settings):
    """An OCR bomb of size, not count: PDF pages 5 m square and a 36-megapixel white image are
    drawn at the model's side, seen to be blank and given no text (no OCR run), well within the
    deadline."""
    from PIL import Image

    settings.MAX_IMAGE_PIXELS = 40_000_000
    white = Image.new("RGB", (6000, 6000), "white")
    for data, name in ((_huge_blank_pdf(3), "huge.pdf"), (png_of(white), "huge.png")):
        asset = upload(data, name)
        layer = finished_layer(asset)
        assert layer.status == TextLayerStatus.DONE, (name, layer.failure, layer.failure_params)
        with department_scope(asset.department_id):
            pages = document_text(asset).pages
        assert [(page.lines, page.source) for page in pages] == [((), TextSource.NONE)] * asset.page_count
        assert max(page.width * page.height for page in pages) <= settings.TEXT_LAYER_MAX_PAGE_PIXELS


def test_thousands_of_tiny_pages_are_refused_quickly(upload, settings):
    settings.MAX_PDF_PAGES = 5000
    asset = upload(pdf_many_pages(3000), "tiny.pdf")
    layer = finished_layer(asset, timeout=30)
    assert (layer.status, layer.failure) == (TextLayerStatus.FAILED, "too_many_pages")


def test_the_layer_is_sealed_at_rest_and_shredded_with_its_file(upload, personas):
    asset = upload(scanned_pdf(1), "scan.pdf")
    layer = finished_layer(asset)
    assert layer.status == TextLayerStatus.DONE
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pages FROM assets_textlayer WHERE id = %s",
            [layer.pk.hex if connection.vendor == "sqlite" else layer.pk],
        )
        (stored,) = cursor.fetchone()
    assert stored.startswith("mmt1:")
    assert "1,234.56" not in stored and "12345678" not in stored and "发票" not in stored
    with department_scope(asset.department_id):
        assert "上海示例贸易" in document_text(asset).page(1).text  # what the dump must not show
    from tests.chat.test_encryption_at_rest import pg_dump_tables

    dump = "\n".join(pg_dump_tables().values())
    assert "上海示例贸易" not in dump and "12345678" not in dump and "1,234.56" not in dump
    with department_scope(asset.department_id):
        asset_delete(asset=Asset.objects.get(pk=asset.pk), acting_user=personas.member)
    with all_departments(reason="test"):
        assert not TextLayer.objects.filter(pk=layer.pk).exists()
        entry = AuditEntry.objects.filter(event_type="asset.delete", object_id=str(asset.pk)).get()
    assert entry.details["deleted_with"]["assets.textlayer"] == {"count": 1, "ids": [str(layer.pk)]}


def test_identical_bytes_uploaded_again_copy_the_finished_layer(upload, personas):
    data = scanned_pdf(1)
    first = upload(data, "scan.pdf")
    finished_layer(first)
    second = upload(data, "again.pdf", user=personas.admin)
    layer = finished_layer(second)
    assert layer.status == TextLayerStatus.DONE
    assert text_layer_entries(second)[-1]["copied_from"] == str(first.pk)
    with department_scope(first.department_id):
        assert document_text(second) == document_text(first)
        first_key = TextLayer.objects.get(asset=first).text_key
    assert bytes(layer.text_key) != bytes(first_key)  # sealed under the new upload's own key


def test_a_job_left_running_by_a_dead_process_is_picked_up_again(upload, settings):
    settings.TEXT_LAYER_WORKERS = 0  # nothing runs it at upload
    asset = upload(scanned_pdf(1), "scan.pdf")
    host = RUNNER.split(":")[0]
    dead_pid = 2**22 + 12345  # above pid_max: no such process
    assert not os.path.exists(f"/proc/{dead_pid}")
    with department_scope(asset.department_id):
        TextLayer.objects.filter(asset=asset).update(status="running", runner=f"{host}:{dead_pid}:deadbeef", attempts=1)
    settings.TEXT_LAYER_WORKERS = 1
    with department_scope(asset.department_id):
        text_layer_look(asset)  # the next look queues it again
    layer = finished_layer(asset)
    assert layer.status == TextLayerStatus.DONE and layer.attempts == 2


def test_a_job_interrupted_too_often_fails_instead_of_looping(upload, settings):
    settings.TEXT_LAYER_WORKERS = 0
    asset = upload(scanned_pdf(1), "scan.pdf")
    with department_scope(asset.department_id):
        layer = TextLayer.objects.get(asset=asset)
        TextLayer.objects.filter(pk=layer.pk).update(attempts=3)
    assert text_layer_run(layer.pk) is None
    with department_scope(asset.department_id):
        layer = TextLayer.objects.get(pk=layer.pk)
    assert (layer.status, layer.failure) == (TextLayerStatus.FAILED, "interrupted")


def test_stopping_the_workers_hands_the_job_back_and_the_next_look_resumes_it(upload):
    from assets.documents import jobs

    asset = upload(scanned_pdf(3), "scan.pdf")

    def reading():
        with department_scope(asset.department_id):
            layer = TextLayer.objects.get(asset=asset)
        return layer.status == TextLayerStatus.RUNNING and layer.pages_done >= 1

    wait_until(reading, timeout=DEADLINE, interval=0.05, message="the job never started")
    try:
        jobs.text_layer_workers_stop(timeout=60)  # what atexit does when SIGTERM ends the server
        with department_scope(asset.department_id):
            layer = TextLayer.objects.get(asset=asset)
        assert (layer.status, layer.runner, layer.attempts) == (TextLayerStatus.PENDING, jobs.HANDED_BACK, 0)
        assert not any(worker.is_alive() for worker in jobs._workers)
    finally:
        jobs._stop.clear()  # the next process, in effect
    with department_scope(asset.department_id):
        text_layer_look(asset)
    layer = finished_layer(asset)
    assert layer.status == TextLayerStatus.DONE and layer.attempts == 1 and layer.pages_done == 3
    assert [summary["status"] for summary in text_layer_entries(asset)] == ["running", "running", "done"]


def test_master_key_rotation_rewraps_the_layers_key(upload):
    from assets import keyring
    from assets.services import asset_master_key_rotate

    asset = upload(scanned_pdf(1), "scan.pdf")
    finished_layer(asset)
    with department_scope(asset.department_id):
        before = document_text(asset)
        old_key_id = TextLayer.objects.get(asset=asset).text_key_id
    new_key_id = keyring.keyring_add_active_key()
    result = asset_master_key_rotate()
    assert result["remaining"] == 0 and result["text_rewrapped"] >= 2  # the file name's key and the layer's
    with department_scope(asset.department_id):
        layer = TextLayer.objects.get(asset=asset)
        assert document_text(asset) == before
    assert old_key_id and old_key_id != new_key_id and layer.text_key_id == new_key_id


def test_deleting_a_file_while_its_text_is_read_stops_the_job_quietly(upload, personas, caplog):
    from assets.documents import jobs

    asset = upload(scanned_pdf(3), "scan.pdf")

    def reading():
        with department_scope(asset.department_id):
            layer = TextLayer.objects.get(asset=asset)
        return layer.status == TextLayerStatus.RUNNING and layer.pages_done >= 1 and layer

    layer = wait_until(reading, timeout=DEADLINE, interval=0.05, message="the job never started")
    with department_scope(asset.department_id):
        asset_delete(asset=Asset.objects.get(pk=asset.pk), acting_user=personas.member)
    wait_until(lambda: str(layer.pk) not in jobs._active, timeout=DEADLINE, message="the worker kept reading")
    with all_departments(reason="test"):
        assert not TextLayer.objects.filter(pk=layer.pk).exists()  # not written back
    assert [summary["status"] for summary in text_layer_entries(asset)] == ["running"]  # no end recorded
    assert not [record for record in caplog.records if record.levelname == "ERROR"]
