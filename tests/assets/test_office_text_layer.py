"""The text layer of Office and DICOM files: made by the real background job, an
Office file's text pages carry exactly the lines and boxes it was rendered with
(``TextSource.OFFICE``), its embedded pictures and a DICOM file's frames go through OCR (blank
ones cost none). Runs on the real worker pool, committed, waiting with a deadline."""

from __future__ import annotations

import pytest

from assets.documents.models import TextLayer, TextLayerStatus
from assets.documents.office import office_document_text
from assets.documents.pages import TextSource
from assets.documents.selectors import document_text
from assets.models import Asset
from assets.reading import asset_open_reader
from departments.tenancy import department_scope
from tests.assets.test_dicom_files import dicom_bytes
from tests.assets.test_office_files import AMOUNT_LINE, docx_bytes
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def text_workers(settings):
    settings.TEXT_LAYER_WORKERS = 1
    settings.TEXT_LAYER_MAX_PAGES = 50
    settings.OCR_PAGE_SECONDS = 120
    settings.OCR_DOCUMENT_SECONDS = 600
    settings.TEXT_LAYER_MAX_PAGE_PIXELS = 4_000_000


def finished_layer(asset: Asset) -> TextLayer:
    def finished():
        with department_scope(asset.department_id):
            layer = TextLayer.objects.get(asset=asset)
        return layer if layer.is_finished else None

    return wait_until(finished, timeout=90.0, interval=0.2, message=f"text layer of {asset.pk} did not finish")


def test_a_docx_text_layer_holds_the_rendered_lines_with_their_boxes(upload):
    asset = upload(docx_bytes(), "contract.docx")
    layer = finished_layer(asset)
    assert layer.status == TextLayerStatus.DONE, layer.failure
    with department_scope(asset.department_id):
        document = document_text(asset)
    with asset_open_reader(asset) as reader:
        rendered = office_document_text(reader)
    first = document.page(1)
    assert first.source is TextSource.OFFICE
    assert [(line.text, tuple(line.box)) for line in first.lines] == [
        (line.text, tuple(line.box)) for line in rendered.page(1).lines
    ]
    assert AMOUNT_LINE in first.text
    picture = document.page(2)
    assert picture.usable and picture.lines == () and picture.source is TextSource.NONE  # one flat colour
    assert len(document.pages) == asset.page_count == 2


def test_a_dicom_text_layer_has_a_page_per_frame(upload):
    asset = upload(dicom_bytes(frames=2), "cine.dcm")
    layer = finished_layer(asset)
    assert layer.status == TextLayerStatus.DONE, layer.failure
    with department_scope(asset.department_id):
        document = document_text(asset)
    assert [page.number for page in document.pages] == [1, 2]
    assert all(page.usable and (page.width, page.height) == (16, 16) for page in document.pages)


def long_docx_bytes(pages: int) -> bytes:
    """A DOCX whose text renders to several pages, one page break per topic, the last topic the
    only one that mentions the warranty."""
    import io

    import docx

    document = docx.Document()
    for number in range(1, pages + 1):
        topic = "warranty claims and the repair deadline" if number == pages else f"delivery schedule part {number}"
        document.add_paragraph(f"Section {number}: {topic}")
        for line in range(40):
            document.add_paragraph(f"Clause {number}.{line} of the {topic.split()[0]} terms.")
        if number < pages:
            document.add_page_break()
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def test_an_office_file_and_a_dicom_file_send_the_pages_the_question_needs(upload):
    """Retrieval is not for PDFs only: a long DOCX sends the page that answers, a DICOM file the
    frame the question pins — only those pages are drawn or decoded, and the answer records them."""
    from assets.documents.model_pages import page_refs, pages_choose, pages_images

    asset = upload(long_docx_bytes(6), "terms.docx")
    assert finished_layer(asset).status == TextLayerStatus.DONE
    assert asset.page_count >= 6
    with department_scope(asset.department_id):
        document = document_text(asset)
        answer = next(page.number for page in document.pages if "warranty" in page.text)
        assert answer > 4  # beyond the first pages a request sent before retrieval
        choice = pages_choose(asset, "What does the warranty say about the repair deadline?", limit=16)
        assert choice.how == "retrieved" and answer in choice.pages
        images = pages_images(asset, choice)
    assert len(images) == len(choice.pages)
    assert {"asset": str(asset.pk), "page": answer} in page_refs(asset, choice)

    scan = upload(dicom_bytes(frames=3), "cine.dcm")
    with department_scope(scan.department_id):
        choice = pages_choose(scan, "Look at page 3 only", limit=16)
        assert choice.pages[0] == 3 and choice.pinned == (3,)
        (frame, *_rest) = pages_images(scan, choice)
    assert frame.size[0] > 0
    assert page_refs(scan, choice)[0] == {"asset": str(scan.pk), "page": 3}
