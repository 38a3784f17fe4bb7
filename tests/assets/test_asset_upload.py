"""asset_upload: accepted formats, hostile inputs (each refused with its reason, nothing kept),
deduplication, quota, and no plaintext on disk."""

from __future__ import annotations

import hashlib

import pytest

from assets import rejections
from assets.models import Asset
from assets.reading import asset_page_images, asset_plaintext_chunks, asset_thumbnail_png
from assets.rejections import AssetRejected
from compliance.events import EventType, Outcome
from compliance.models import AuditEntry
from departments.tenancy import all_departments, department_scope
from tests.assets import samples
from tests.assets.conftest import stored_files

pytestmark = pytest.mark.django_db

ACCEPTED = [
    ("JPEG", "image/jpeg", {}),
    ("PNG", "image/png", {}),
    ("BMP", "image/bmp", {}),
    ("WEBP", "image/webp", {}),
    ("TIFF", "image/tiff", {}),
    ("GIF", "image/gif", {}),
]


def asset_count() -> int:
    with all_departments(reason="test"):
        return Asset.objects.count()


def assert_nothing_kept(storage) -> None:
    assert asset_count() == 0
    assert stored_files(storage) == []


def last_entry() -> AuditEntry:
    return AuditEntry.objects.order_by("-sequence").first()


@pytest.mark.parametrize(("fmt", "mime", "options"), ACCEPTED)
def test_each_image_format_is_stored_encrypted_and_reads_back(upload, asset_storage, personas, fmt, mime, options):
    data = samples.image_bytes(fmt, (40, 30), **options)
    asset = upload(data, f"picture.{fmt.lower()}")
    assert (asset.content_type, asset.width, asset.height, asset.page_count) == (mime, 40, 30, 1)
    assert asset.sha256 == hashlib.sha256(data).hexdigest()
    assert asset.size == len(data)
    assert asset.classification == personas.department_a.classification
    assert asset.uploaded_by == personas.member
    with department_scope(personas.department_a):
        assert b"".join(asset_plaintext_chunks(asset)) == data
        (page,) = asset_page_images(asset)
        assert page.size == (40, 30) and page.mode == "RGB"
        assert asset_thumbnail_png(asset).startswith(b"\x89PNG")
    (blob,) = stored_files(asset_storage)
    assert blob.name == asset.storage_name and data not in blob.read_bytes()
    entry = last_entry()
    assert (entry.event_type, entry.outcome, entry.object_id) == (
        EventType.ASSET_UPLOAD,
        Outcome.SUCCESS,
        str(asset.pk),
    )
    assert entry.details["sha256"] == asset.sha256


def test_first_frame_of_an_animated_gif_is_what_counts(upload):
    from io import BytesIO

    from PIL import Image

    frames = [Image.new("RGB", (20, 10), colour) for colour in ("red", "green", "blue")]
    buffer = BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    asset = upload(buffer.getvalue(), "anim.gif")
    assert (asset.content_type, asset.width, asset.height) == ("image/gif", 20, 10)


def test_pdf_is_stored_with_its_page_count_and_renders_pages(upload, personas):
    asset = upload(samples.pdf_bytes(pages=3, size=(200, 100)), "contract.pdf")
    assert (asset.content_type, asset.page_count, asset.width, asset.height) == ("application/pdf", 3, 200, 100)
    with department_scope(personas.department_a):
        pages = asset_page_images(asset, max_pages=2, max_side=400)
    assert [page.size for page in pages] == [(400, 200), (400, 200)]


def test_no_plaintext_marker_anywhere_in_storage(upload, asset_storage):
    data = samples.png_with_marker()
    assert samples.MARKER in data  # the control: the marker really is in the file, in clear
    upload(data, "marker.png")
    pdf = samples.pdf_bytes(1)
    upload(pdf, "plain.pdf")
    files = stored_files(asset_storage)
    assert len(files) == 2
    for path in files:
        content = path.read_bytes()
        assert samples.MARKER not in content
        assert pdf[:64] not in content and data[:64] not in content


def test_a_duplicate_upload_is_its_uploaders_own_reference_to_the_stored_blob(upload, personas, asset_storage):
    data = samples.image_bytes("PNG")
    first = upload(data, "a.png")
    second = upload(data, "b.png", user=personas.admin)
    # The bytes are stored once; each upload is its uploader's own row, name and key copy.
    assert second.pk != first.pk and (second.original_name, second.uploaded_by) == ("b.png", personas.admin)
    assert second.storage_name == first.storage_name and bytes(second.wrapped_key) == bytes(first.wrapped_key)
    assert asset_count() == 2 and len(stored_files(asset_storage)) == 1
    entry = last_entry()
    assert entry.details["deduplicated"] is True and entry.actor_name == "alice"
    assert entry.object_id == str(second.pk) and entry.details["blob_of"] == str(first.pk)
    # Another department storing the same bytes gets its own copy and key.
    other = upload(data, "c.png", user=personas.outsider, department=personas.department_b)
    assert other.pk != first.pk and len(stored_files(asset_storage)) == 2


# --- hostile inputs: each refused with its reason; storage and database keep nothing ---------


def _sneaky_jpeg_with_pdf_header() -> bytes:
    jpeg = samples.image_bytes("JPEG")
    return jpeg[:2] + b"\xff\xfe\x00\x10%PDF-1.4 hi!!" + jpeg[2:]  # a COM segment holding %PDF-


HOSTILE = [
    ("html named .png", b"<html><body><script>alert(1)</script></body></html>", "x.png", "unsupported_type", 400),
    (
        "svg named .jpg",
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "x.jpg",
        "unsupported_type",
        400,
    ),
    ("exe named .pdf", b"MZ\x90\x00" + b"\x00" * 200, "x.pdf", "unsupported_type", 400),
    ("zip", samples.zip_bytes(), "x.png", "unsupported_type", 400),
    (
        "png + html in the head",
        samples.image_bytes("PNG")[:33] + b"<script>alert(1)</script>" + samples.image_bytes("PNG")[33:],
        "x.png",
        "ambiguous",
        400,
    ),
    ("jpeg + pdf header", _sneaky_jpeg_with_pdf_header(), "x.jpg", "ambiguous", 400),
    ("png + appended zip", samples.image_bytes("PNG") + samples.zip_bytes(), "x.png", "ambiguous", 400),
    ("png + data after IEND", samples.image_bytes("PNG") + b"trailing payload", "x.png", "ambiguous", 400),
    ("truncated png", samples.noisy_png((64, 64))[:-400], "x.png", "unreadable_image", 400),
    ("truncated jpeg", samples.image_bytes("JPEG", (300, 300), quality=95)[:-600], "x.jpg", "unreadable_image", 400),
    ("png signature only", b"\x89PNG\r\n\x1a\n", "x.png", "unreadable_image", 400),
    ("broken pdf", b"%PDF-1.7\n1 0 obj garbage", "x.pdf", "unreadable_pdf", 400),
    ("truncated pdf", samples.pdf_bytes(2)[:120], "x.pdf", "unreadable_pdf", 400),
    ("decompression bomb", samples.png_bomb(20_000, 20_000), "bomb.png", "too_many_pixels", 413),
    ("pdf with thousands of pages", samples.pdf_many_pages(5000), "big.pdf", "too_many_pages", 413),
    ("zero bytes", b"", "empty.png", "empty", 400),
]


@pytest.mark.parametrize(("label", "data", "name", "code", "status"), HOSTILE, ids=[case[0] for case in HOSTILE])
def test_hostile_content_is_refused_and_nothing_is_kept(upload, asset_storage, label, data, name, code, status):
    with pytest.raises(AssetRejected) as refused:
        upload(data, name)
    assert (refused.value.code, refused.value.status) == (code, status)
    assert refused.value.message
    assert_nothing_kept(asset_storage)
    entry = last_entry()
    assert (entry.event_type, entry.outcome, entry.details["reason"]) == (EventType.ASSET_UPLOAD, Outcome.FAILURE, code)


def test_bomb_is_small_on_the_wire():
    assert len(samples.png_bomb(20_000, 20_000)) < 1_000_000


def test_over_size_file_is_refused_while_streaming(upload, asset_storage, settings):
    settings.MAX_UPLOAD_MB = 1
    with pytest.raises(AssetRejected) as refused:
        upload(samples.noisy_png((700, 700)), "huge.png")
    assert (refused.value.code, refused.value.status) == ("too_large", 413)
    assert str(refused.value.message) == rejections.TOO_LARGE.format(limit_mb=1)
    assert_nothing_kept(asset_storage)


def test_quota_is_enforced_per_department(upload, asset_storage, settings, personas):
    settings.DEPARTMENT_QUOTA_MB = 1
    upload(samples.noisy_png((450, 450)), "first.png")  # ~610 KB of a 1 MB quota
    with pytest.raises(AssetRejected) as refused:
        upload(samples.noisy_png((451, 451)), "second.png")
    assert (refused.value.code, refused.value.status) == ("quota_exceeded", 413)
    assert asset_count() == 1 and len(stored_files(asset_storage)) == 1
    # The other department has its own quota.
    upload(samples.noisy_png((452, 452)), "third.png", user=personas.outsider, department=personas.department_b)


def test_upload_cut_off_mid_stream_is_refused(upload, asset_storage):
    data = samples.image_bytes("PNG", (200, 200))
    with pytest.raises(AssetRejected) as refused:
        upload(data[: len(data) // 2], "cut.png", expected_size=len(data))
    assert refused.value.code == "incomplete"
    assert_nothing_kept(asset_storage)


def test_stream_that_fails_mid_read_is_refused_and_cleaned_up(personas, system_context, asset_storage):
    from assets.services import asset_upload

    def dying_stream():
        yield samples.noisy_png((300, 300))[:100_000]
        raise ConnectionResetError("client went away")

    with department_scope(personas.department_a), pytest.raises(AssetRejected) as refused:
        asset_upload(
            department=personas.department_a, uploaded_by=personas.member, stream=dying_stream(), original_name="x.png"
        )
    assert refused.value.code == "incomplete"
    assert_nothing_kept(asset_storage)


def test_unexpected_error_after_staging_leaves_nothing(upload, asset_storage, monkeypatch):
    # A failing audit write must fail the upload (AU-4) and take the blob with it.
    import assets.services

    def broken_audit(**kwargs):
        raise RuntimeError("audit database unavailable")

    monkeypatch.setattr(assets.services, "audit_record", broken_audit)
    with pytest.raises(RuntimeError):
        upload(samples.image_bytes("PNG"), "x.png")
    assert_nothing_kept(asset_storage)


BAD_NAMES = [
    "../../etc/passwd.png",
    "..\\..\\boot.ini.png",
    "/etc/shadow.png",
    "C:\\Windows\\x.png",
    "C:x.png",
    "a\x00.png",
    "invoice\u202egnp.exe",  # right-to-left override
    "zero\u200bwidth.png",
    "..",
    "  ",
    "",
    "full\uff0fwidth.png",  # a full-width solidus folds to "/"
    "line\nbreak.png",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_tricky_names_are_refused_and_nothing_is_kept(upload, asset_storage, name):
    with pytest.raises(AssetRejected) as refused:
        upload(samples.image_bytes("PNG"), name)
    assert refused.value.code == "bad_name"
    assert_nothing_kept(asset_storage)


@pytest.mark.parametrize("name", ["发票 2024-03.png", "Ångström.png", ".hidden.png", "a" * 300 + ".png"])
def test_ordinary_unicode_names_are_kept_as_metadata_only(upload, asset_storage, name):
    asset = upload(samples.image_bytes("PNG"), name)
    assert asset.original_name.endswith(".png") and len(asset.original_name) <= 200
    assert [path.name for path in stored_files(asset_storage)] == [asset.storage_name]


def test_type_is_decided_by_content_not_by_name(upload):
    asset = upload(samples.image_bytes("PNG"), "report.pdf")
    assert asset.content_type == "image/png"
