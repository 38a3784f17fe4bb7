"""Office page views (thumbnail, ?page=N, the extraction page, chat) reuse the read and laid-out
document instead of parsing the package again; a file is served only its own pages. The
documents are generated (python-docx)."""

from __future__ import annotations

import io

import pytest

from assets.documents import office
from assets.reading import asset_document_pages, asset_open_reader, asset_page_images
from tests.assets.test_office_files import docx_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_cache():
    office.cache_clear()
    yield
    office.cache_clear()


@pytest.fixture
def reads(monkeypatch) -> list[int]:
    """Every parse of a package by ``office_read`` (the package check and python-docx)."""
    calls: list[int] = []
    original = office.office_read

    def counting(reader, size, **kwargs):
        calls.append(size)
        return original(reader, size, **kwargs)

    monkeypatch.setattr(office, "office_read", counting)
    return calls


def fresh(reads: list[int]) -> None:
    """Start counting from an empty cache (the upload may already have rendered a page)."""
    office.cache_clear()
    reads.clear()


def one_paragraph_docx(text: str) -> bytes:
    import docx

    document = docx.Document()
    document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def page_text(asset) -> list[str]:
    with asset_open_reader(asset) as reader:
        return [line.text for line in office.office_document_text(reader).page(1).lines]


def test_a_second_page_view_does_not_parse_the_package_again(upload, reads):
    asset = upload(docx_bytes(), "contract.docx")
    fresh(reads)
    first = asset_document_pages(asset, [1])[0]
    assert len(reads) == 1
    again = asset_document_pages(asset, [1])[0]
    picture = asset_document_pages(asset, [2])[0]
    thumbnails = asset_page_images(asset, max_pages=2)
    assert page_text(asset)[0] == "Service agreement"
    assert len(reads) == 1  # five views, one parse
    assert again.tobytes() == first.tobytes() and picture.size == (64, 48) and len(thumbnails) == 2


def test_another_file_is_never_served_from_a_files_cache_entry(upload, reads):
    first = upload(one_paragraph_docx("Alpha agreement"), "a.docx")
    second = upload(one_paragraph_docx("Beta agreement"), "b.docx")
    fresh(reads)
    assert page_text(first) == ["Alpha agreement"]
    assert page_text(second) == ["Beta agreement"]
    assert len(reads) == 2
    rendered = [asset_document_pages(asset, [1])[0].tobytes() for asset in (first, second)]
    assert rendered[0] != rendered[1]
    assert page_text(first) == ["Alpha agreement"] and len(reads) == 2


def test_the_cache_is_bounded_and_can_be_turned_off(upload, reads, settings):
    settings.OFFICE_PAGE_CACHE_DOCUMENTS = 2
    assets = [upload(one_paragraph_docx(f"Document {number}"), f"{number}.docx") for number in range(3)]
    fresh(reads)
    for asset in assets:
        page_text(asset)
    assert len(reads) == 3
    page_text(assets[0])  # the least recently used one was dropped
    assert len(reads) == 4
    settings.OFFICE_PAGE_CACHE_DOCUMENTS = 0
    page_text(assets[0])
    page_text(assets[0])
    assert len(reads) == 6


def test_a_changed_page_limit_lays_the_file_out_again(upload, reads, settings):
    asset = upload(docx_bytes(image=False), "contract.docx")
    fresh(reads)
    page_text(asset)
    settings.MAX_PDF_PAGES = 49
    page_text(asset)
    assert len(reads) == 2


def test_each_department_has_its_own_entry_for_the_same_bytes(upload, reads, personas):
    """Another department's upload of the same bytes is laid out again: the time a page view
    takes never tells one department that another holds the same file."""
    data = one_paragraph_docx("Shared agreement")
    ours = upload(data, "ours.docx")
    theirs = upload(data, "theirs.docx", user=personas.outsider, department=personas.department_b)
    fresh(reads)
    assert page_text(ours) == page_text(theirs) == ["Shared agreement"]
    assert len(reads) == 2
    assert page_text(ours) == page_text(theirs) and len(reads) == 2


def test_deleting_a_file_forgets_its_laid_out_pages(upload, reads, personas, django_capture_on_commit_callbacks):
    from assets.services import asset_delete

    asset = upload(one_paragraph_docx("Confidential agreement"), "gone.docx")
    kept = upload(one_paragraph_docx("Other agreement"), "kept.docx")
    fresh(reads)
    page_text(asset)
    page_text(kept)
    assert {key[0][1] for key in office._CACHE} == {asset.storage_name, kept.storage_name}
    with django_capture_on_commit_callbacks(execute=True):
        asset_delete(asset=asset, acting_user=personas.member)
    assert {key[0][1] for key in office._CACHE} == {kept.storage_name}


def test_an_entry_lives_at_most_its_time_bound_used_or_not(upload, reads, settings):
    """The sweeper drops an entry when its time is up although nobody looks at it again: the
    plaintext does not outlive the bound on a quiet worker. A bound of 0 keeps nothing."""
    from tests.support.waiting import wait_until

    asset = upload(one_paragraph_docx("Short-lived agreement"), "a.docx")
    other = upload(one_paragraph_docx("Another agreement"), "b.docx")
    fresh(reads)
    settings.OFFICE_PAGE_CACHE_SECONDS = 600  # far longer than two views take on any machine
    page_text(asset)
    page_text(asset)
    assert len(reads) == 1 and len(office._CACHE) == 1
    # A short bound, and a store to make the sleeping sweeper look again: both entries go, the
    # first although nobody asks for it again.
    settings.OFFICE_PAGE_CACHE_SECONDS = 0.2
    page_text(other)
    wait_until(lambda: not office._CACHE, timeout=60, message="the expired entries were not swept")
    settings.OFFICE_PAGE_CACHE_SECONDS = 0
    page_text(asset)
    page_text(asset)
    assert len(reads) == 4 and not office._CACHE


def test_a_view_reading_a_file_while_it_is_deleted_does_not_store_it(upload, reads, monkeypatch):
    asset = upload(one_paragraph_docx("Deleted meanwhile"), "gone.docx")
    fresh(reads)
    reading = office.office_read

    def deleted_meanwhile(reader, size, **kwargs):
        document = reading(reader, size, **kwargs)
        office.cache_forget(asset.storage_name)  # the deletion commits while this view reads
        return document

    monkeypatch.setattr(office, "office_read", deleted_meanwhile)
    assert page_text(asset) == ["Deleted meanwhile"]
    assert not office._CACHE


def test_a_reader_without_an_identity_is_never_cached(reads):
    office.office_document_text(io.BytesIO(one_paragraph_docx("Loose bytes")))
    assert office._CACHE == {}
