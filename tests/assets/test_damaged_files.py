"""Damaged files (IP-2): refused at upload when the pages the model uses do not decode
completely, and, when a page fails only once it is used, marked unusable so that every later
use refuses it before decoding anything. On PostgreSQL under ``make test``."""

from __future__ import annotations

import pytest

from assets import content, rejections
from assets.models import Asset
from assets.reading import PAGE_UNREADABLE, AssetUnreadable, asset_page_images, asset_thumbnail_png
from assets.rejections import AssetRejected
from compliance.events import EventType, Outcome
from compliance.models import AuditEntry
from departments.tenancy import all_departments, department_scope
from tests.assets import damaged_samples
from tests.assets.conftest import stored_files

pytestmark = pytest.mark.django_db

PNG = damaged_samples.png_many_idat()
BASELINE_JPEG = damaged_samples.jpeg()
PROGRESSIVE_JPEG = damaged_samples.jpeg(progressive=True)
CUT_FILES = [
    *((f"png, {label}", data, "cut.png") for label, data in damaged_samples.png_cuts(PNG).items()),
    *((f"jpeg, {label}", data, "cut.jpg") for label, data in damaged_samples.jpeg_cuts(BASELINE_JPEG).items()),
    *(
        (f"progressive jpeg, {label}", data, "cut.jpg")
        for label, data in damaged_samples.jpeg_cuts(PROGRESSIVE_JPEG).items()
    ),
]


def asset_count() -> int:
    with all_departments(reason="test"):
        return Asset.objects.count()


@pytest.mark.parametrize(("label", "data", "name"), CUT_FILES, ids=[case[0] for case in CUT_FILES])
def test_a_truncated_image_is_refused_at_upload_with_a_clear_error(upload, asset_storage, label, data, name):
    with pytest.raises(AssetRejected) as refused:
        upload(data, name)
    assert (refused.value.code, refused.value.status) == ("unreadable_image", 400)
    assert refused.value.message == str(rejections.UNREADABLE_IMAGE)
    assert asset_count() == 0 and stored_files(asset_storage) == []
    entry = AuditEntry.objects.order_by("-sequence").first()
    assert (entry.event_type, entry.outcome, entry.details["reason"]) == (
        EventType.ASSET_UPLOAD,
        Outcome.FAILURE,
        "unreadable_image",
    )


@pytest.mark.parametrize(
    ("data", "name"), [(PNG, "whole.png"), (BASELINE_JPEG, "whole.jpg"), (PROGRESSIVE_JPEG, "p.jpg")]
)
def test_the_same_images_whole_are_accepted(upload, data, name):
    """The control for the test above: what is refused is the cut, not the file."""
    assert upload(data, name).width > 0


@pytest.mark.parametrize("seed", damaged_samples.JPEG_SEEDS_PILLOW_ACCEPTS_WITHOUT_EOI)
def test_a_jpeg_cut_just_before_its_end_marker_is_refused_though_pillow_decodes_it(upload, asset_storage, seed):
    import io

    from PIL import Image

    whole = damaged_samples.jpeg(seed=seed)
    cut = damaged_samples.jpeg_cuts(whole)["EOI missing"]
    with Image.open(io.BytesIO(cut)) as image:  # why the marker walk exists
        image.load()
    with pytest.raises(AssetRejected) as refused:
        upload(cut, "cut.jpg")
    assert refused.value.code == "unreadable_image"
    assert upload(whole, "whole.jpg").width == 300


def test_a_png_cut_only_after_its_pixels_still_decodes_in_pillow():
    """Why the chunk walk exists: Pillow alone accepts a PNG whose IEND is gone."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(damaged_samples.png_cuts(PNG)["IEND missing"])) as image:
        image.load()


def test_a_pdf_whose_used_page_is_broken_is_refused_at_upload(upload, asset_storage):
    assert content.MODEL_PAGES_PER_FILE >= 2
    data = damaged_samples.pdf_with_pages(6, broken=frozenset({2}))
    with pytest.raises(AssetRejected) as refused:
        upload(data, "contract.pdf")
    assert (refused.value.code, refused.value.status) == ("unreadable_pdf", 400)
    assert refused.value.message == str(rejections.UNREADABLE_PDF_PAGE).format(page=2)
    assert asset_count() == 0 and stored_files(asset_storage) == []


def test_a_pdf_broken_only_beyond_the_pages_the_model_uses_is_accepted_and_usable(upload, personas):
    """Upload checks the pages the model is shown today (MODEL_PAGES_PER_FILE), not every page of
    a long document (that is the documents issue's background job)."""
    pages = content.MODEL_PAGES_PER_FILE + 2
    data = damaged_samples.pdf_with_pages(pages, broken=frozenset({pages}))
    asset = upload(data, "long.pdf")
    assert asset.page_count == pages
    with department_scope(personas.department_a):
        images = asset_page_images(asset)
    assert len(images) == content.MODEL_PAGES_PER_FILE
    assert asset.unusable_pages == []


@pytest.fixture
def upload_checked_first_page_only(upload, monkeypatch):
    """Store a file as a version that checked only a PDF's first page did (the situation the
    use-time handling is for: a file already stored, or a page that fails only when used)."""

    def do(data: bytes, name: str, **kwargs):
        with monkeypatch.context() as patch:
            patch.setattr(content, "MODEL_PAGES_PER_FILE", 1)
            return upload(data, name, **kwargs)

    return do


def test_a_page_that_fails_when_used_is_refused_marked_on_every_reference_and_audited(
    upload_checked_first_page_only, personas, monkeypatch
):
    data = damaged_samples.pdf_with_pages(3, broken=frozenset({2}))
    asset = upload_checked_first_page_only(data, "old.pdf")
    again = upload_checked_first_page_only(data, "old-again.pdf", user=personas.admin)  # same blob
    assert asset.unusable_pages == [] and again.storage_name == asset.storage_name

    with department_scope(personas.department_a), pytest.raises(AssetUnreadable) as failed:
        asset_page_images(asset)
    assert failed.value.page == 2 and failed.value.code == "unreadable_file"
    assert str(failed.value) == PAGE_UNREADABLE.format(page=2, name="old.pdf")
    with all_departments(reason="test"):
        marks = {row.original_name: row.unusable_pages for row in Asset.objects.all()}
    assert marks == {"old.pdf": [2], "old-again.pdf": [2]}
    entry = AuditEntry.objects.filter(event_type=EventType.ASSET_UPDATE).latest("sequence")
    assert entry.details["unusable_page"] == 2 and entry.actor_name == "system"

    # The next use refuses at once, before a byte is decrypted or a page rendered.
    decodes = []
    monkeypatch.setattr(content, "page_images", lambda *args, **kwargs: decodes.append(args) or [])
    with all_departments(reason="test"):
        reloaded = Asset.objects.get(pk=again.pk)
    with department_scope(personas.department_a), pytest.raises(AssetUnreadable) as known:
        asset_page_images(reloaded)
    assert known.value.page == 2 and decodes == []


def test_a_damaged_later_page_leaves_the_first_page_usable_for_the_thumbnail(upload_checked_first_page_only, personas):
    asset = upload_checked_first_page_only(damaged_samples.pdf_with_pages(3, broken=frozenset({2})), "old.pdf")
    with department_scope(personas.department_a):
        with pytest.raises(AssetUnreadable):
            asset_page_images(asset)
        assert asset_thumbnail_png(asset).startswith(b"\x89PNG")
