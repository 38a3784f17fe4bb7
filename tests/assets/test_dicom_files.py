"""DICOM files: identifiers removed per the basic confidentiality profile before the
file is stored (the stored blob is decrypted and parsed here), the removed tags audited without
values, both hashes recorded, burned-in annotations and undecodable compression refused cleanly,
and the file's own window applied when the frames are rendered for the model. The files are
written by pydicom in the test."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    VLEndoscopicImageStorage,
    XRayAngiographicImageStorage,
    generate_uid,
)

from assets import content, rejections
from assets.documents import dicom
from assets.models import Asset
from assets.reading import asset_page_images, asset_plaintext_chunks, asset_thumbnail_png
from assets.rejections import AssetRejected
from compliance.events import EventType, Outcome
from compliance.models import AuditEntry
from departments.tenancy import all_departments
from tests.assets.conftest import stored_files

pytestmark = pytest.mark.django_db

PATIENT = "Zhang^Wei"
PATIENT_ID = "MRN-0042-XYZ"
INSTITUTION = "Riverside General Hospital"
PRIVATE_VALUE = "vendor-note-Zhang-private"
RECOGNIZABLE, UNCONFIRMED = "dicom_recognizable_features", "dicom_burned_in_unconfirmed"
# Window centre 1000, width 400 (LINEAR): 1000 is mid-grey, 700 below the window, 1300 above.
CENTRE, BELOW, ABOVE = 1000, 700, 1300


def dicom_bytes(
    *,
    study_uid: str | None = None,
    photometric: str = "MONOCHROME2",
    frames: int = 1,
    burned_in: str | None = "NO",
    syntax: str = ExplicitVRLittleEndian,
    window: tuple[int, int] | None = (1000, 400),
    modality: str = "OT",
    sop_class: str = SecondaryCaptureImageStorage,
    recognizable: str | None = None,
    meta_extra: dict[str, str] | None = None,
) -> bytes:
    """A generated file: by default a Secondary Capture (Modality OT) that says
    ``BurnedInAnnotation = NO`` (``burned_in=None`` leaves the attribute out)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = instance = generate_uid()
    meta.TransferSyntaxUID = syntax
    meta.SourceApplicationEntityTitle = "SCANNER01"
    for keyword, value in (meta_extra or {}).items():
        setattr(meta, keyword, value)
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = sop_class
    dataset.SOPInstanceUID = instance
    dataset.StudyInstanceUID = study_uid or generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.PatientName = PATIENT
    dataset.PatientID = PATIENT_ID
    dataset.PatientBirthDate = "19700412"
    dataset.InstitutionName = INSTITUTION
    dataset.ReferringPhysicianName = "Li^Na"
    dataset.StudyDate = "20240105"
    dataset.AccessionNumber = "ACC123456"
    dataset.Modality = modality
    dataset.add_new(0x00091010, "LO", PRIVATE_VALUE)
    dataset.private_block(0x0011, "ACME 1.0", create=True).add_new(0x01, "LO", PATIENT_ID + "-private")
    if burned_in is not None:
        dataset.BurnedInAnnotation = burned_in
    if recognizable is not None:
        dataset.RecognizableVisualFeatures = recognizable
    dataset.Rows = dataset.Columns = 16
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 12, 11, 0
    if window:
        dataset.WindowCenter, dataset.WindowWidth = window
    shape = (frames, 16, 16) if frames > 1 else (16, 16)
    pixels = np.zeros(shape, dtype=np.uint16)
    pixels[..., 0, 0], pixels[..., 0, 1], pixels[..., 0, 2] = CENTRE, BELOW, ABOVE
    if frames > 1:
        dataset.NumberOfFrames = frames
    if syntax == JPEGLSLossless:
        from pydicom.encaps import encapsulate

        dataset.PixelData = encapsulate([b"\xff\xd8\xff\xf7 not decodable here \xff\xd9"])
    else:
        dataset.PixelData = pixels.tobytes()
    dataset.preamble = b"\x00" * 128
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def stored_bytes(asset: Asset) -> bytes:
    return b"".join(asset_plaintext_chunks(asset))


def last_upload_entry() -> AuditEntry:
    return AuditEntry.objects.filter(event_type=EventType.ASSET_UPLOAD).order_by("-sequence").first()


def asset_count() -> int:
    with all_departments(reason="test"):
        return Asset.objects.count()


def test_identifiers_are_gone_from_the_stored_file_and_both_hashes_are_recorded(upload):
    original = dicom_bytes()
    asset = upload(original, "scan.dcm")
    assert asset.content_type == content.DICOM.mime == "application/dicom"
    stored = stored_bytes(asset)
    for secret in (b"Zhang", PATIENT_ID.encode(), INSTITUTION.encode(), b"SCANNER01", b"19700412", b"ACC123456"):
        assert secret not in stored, secret
    dataset = dcmread(io.BytesIO(stored))
    assert str(dataset.PatientName) == "" and dataset.PatientID in ("", None)
    assert dataset.PatientBirthDate in ("", None) and "InstitutionName" not in dataset
    assert not [element for element in dataset.iterall() if element.tag.is_private]
    assert dataset.PatientIdentityRemoved == "YES"
    assert dataset.file_meta.MediaStorageSOPInstanceUID == dataset.SOPInstanceUID
    source = dcmread(io.BytesIO(original))
    assert dataset.SOPInstanceUID != source.SOPInstanceUID and dataset.SOPInstanceUID.startswith("2.25.")

    assert asset.sha256 == hashlib.sha256(stored).hexdigest()
    assert asset.uploaded_sha256 == hashlib.sha256(original).hexdigest() != asset.sha256
    entry = last_upload_entry()
    assert entry.outcome == Outcome.SUCCESS
    assert entry.details["sha256"] == asset.sha256
    assert entry.details["uploaded_sha256"] == asset.uploaded_sha256
    done = entry.details["deidentification"]
    assert "(0010,0010) PatientName" in done["emptied"] and "(0010,0020) PatientID" in done["emptied"]
    assert "(0008,0080) InstitutionName" in done["removed"]
    assert "(0002,0016) SourceApplicationEntityTitle" in done["removed"]
    assert "(0008,0018) SOPInstanceUID" in done["uids_replaced"]
    assert {"(0009,1010)", "(0011,0010)", "(0011,1001)"} <= set(done["private_removed"])
    written = json.dumps(entry.details)
    for secret in ("Zhang", PATIENT_ID, INSTITUTION, "SCANNER01", "19700412", source.SOPInstanceUID):
        assert secret not in written, secret


def test_uids_are_replaced_consistently_within_the_department(upload):
    study = generate_uid()
    first = dcmread(io.BytesIO(stored_bytes(upload(dicom_bytes(study_uid=study), "a.dcm"))))
    second = dcmread(io.BytesIO(stored_bytes(upload(dicom_bytes(study_uid=study), "b.dcm"))))
    assert first.StudyInstanceUID == second.StudyInstanceUID != study
    assert first.SOPInstanceUID != second.SOPInstanceUID


def test_the_files_own_window_is_applied_for_the_model(upload):
    (image,) = asset_page_images(upload(dicom_bytes(), "window.dcm"))
    assert image.size == (16, 16)
    # LINEAR window (PS3.3 C.11.2.1.2): centre 1000 -> 128 of 255; outside the window 0 / 255.
    assert [image.getpixel((x, 0)) for x in range(3)] == [(128,) * 3, (0,) * 3, (255,) * 3]
    assert asset_thumbnail_png(upload(dicom_bytes(), "w2.dcm")).startswith(b"\x89PNG")


def test_monochrome1_is_inverted(upload):
    (image,) = asset_page_images(upload(dicom_bytes(photometric="MONOCHROME1"), "inverted.dcm"))
    assert [image.getpixel((x, 0)) for x in range(3)] == [(127,) * 3, (255,) * 3, (0,) * 3]


def test_without_a_window_the_frame_is_scaled_over_its_own_range(upload):
    (image,) = asset_page_images(upload(dicom_bytes(window=None), "plain.dcm"))
    assert image.getpixel((2, 0)) == (255,) * 3 and image.getpixel((5, 5)) == (0,) * 3


def test_frames_are_pages_and_bounded(upload, settings, asset_storage):
    asset = upload(dicom_bytes(frames=3), "cine.dcm")
    assert asset.page_count == 3
    assert len(asset_page_images(asset, max_pages=2)) == 2
    settings.MAX_PDF_PAGES = 2
    with pytest.raises(AssetRejected) as refused:
        upload(dicom_bytes(frames=3), "long-cine.dcm")
    assert (refused.value.code, refused.value.status) == ("too_many_pages", 413)


def test_chosen_frames_alone_are_decoded(upload):
    from assets.reading import asset_document_pages

    asset = upload(dicom_bytes(frames=3), "cine.dcm")
    frames = asset_document_pages(asset, [3, 1])
    assert [frame.getpixel((0, 0)) for frame in frames] == [(128,) * 3, (128,) * 3]


def test_a_burned_in_annotation_is_refused_and_audited(upload, asset_storage):
    with pytest.raises(AssetRejected) as refused:
        upload(dicom_bytes(burned_in="YES"), "burned.dcm")
    assert (refused.value.code, refused.value.status) == ("dicom_burned_in_annotation", 400)
    assert refused.value.message == str(rejections.DICOM_BURNED_IN)
    assert asset_count() == 0 and stored_files(asset_storage) == []
    entry = last_upload_entry()
    assert (entry.outcome, entry.details["reason"]) == (Outcome.FAILURE, "dicom_burned_in_annotation")
    assert "Zhang" not in json.dumps(entry.details)
    assert upload(dicom_bytes(burned_in="NO"), "clean.dcm").page_count == 1  # the control


def test_an_undecodable_compressed_transfer_syntax_is_refused_cleanly(upload, asset_storage):
    with pytest.raises(AssetRejected) as refused:
        upload(dicom_bytes(syntax=JPEGLSLossless), "jpegls.dcm")
    assert (refused.value.code, refused.value.status) == ("dicom_unsupported_compression", 400)
    assert "JPEG-LS" in refused.value.message
    assert asset_count() == 0 and stored_files(asset_storage) == []


def test_a_damaged_dicom_is_refused_cleanly(upload, asset_storage):
    data = dicom_bytes()
    with pytest.raises(AssetRejected) as refused:
        upload(data[: len(data) - 200], "cut.dcm")
    assert refused.value.code == "unreadable_dicom"
    assert asset_count() == 0 and stored_files(asset_storage) == []


def test_a_dicom_preamble_that_is_another_format_is_ambiguous(upload, asset_storage):
    data = bytearray(dicom_bytes())
    data[:4] = b"II*\x00"  # a TIFF head in the preamble: a dual-personality file
    with pytest.raises(AssetRejected) as refused:
        upload(bytes(data), "dual.dcm")
    assert refused.value.code == "ambiguous"
    assert asset_count() == 0


def test_a_dicom_is_never_taken_inline_by_the_model_api(personas):
    """Inline, a DICOM would reach the model without its de-identification."""
    import base64

    from inference.openai.images import ImageRefused, image_source_resolve

    url = "data:application/dicom;base64," + base64.b64encode(dicom_bytes()).decode()
    with pytest.raises(ImageRefused) as refused:
        image_source_resolve(url, department=personas.department_a, actor=personas.member)
    assert refused.value.code == "invalid_image" and "unsupported_type" in str(refused.value)


def test_a_dicom_refusal_is_a_clean_400_through_the_portal_and_the_api(
    client, personas, asset_storage, settings, make_key, client_for
):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    settings.API_KEY_RATE_PER_MINUTE = 1000
    client.force_login(personas.member)
    response = client.post(
        reverse("assets:upload", args=[personas.department_a.slug]),
        {"file": SimpleUploadedFile("burned.dcm", dicom_bytes(burned_in="YES"), "application/dicom")},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 400 and response.json()["code"] == "dicom_burned_in_annotation"
    raw_key, _ = make_key(scopes=["assets:read", "assets:write"], name="PACS")
    api = client_for(raw_key)
    jpegls = SimpleUploadedFile("ls.dcm", dicom_bytes(syntax=JPEGLSLossless), "application/dicom")
    response = api.post("/api/v1/assets", {"file": jpegls})
    assert response.status_code == 400 and response.json()["code"] == "dicom_unsupported_compression"
    assert asset_count() == 0 and stored_files(asset_storage) == []


# --- what attribute edits cannot de-identify (security review) --------------------------------


def assert_dicom_refused(upload, asset_storage, data: bytes, code: str) -> AssetRejected:
    with pytest.raises(AssetRejected) as refused:
        upload(data, "refused.dcm")
    assert (refused.value.code, refused.value.status) == (code, 400), refused.value.message
    assert asset_count() == 0 and stored_files(asset_storage) == []
    entry = last_upload_entry()
    assert (entry.outcome, entry.details["reason"]) == (Outcome.FAILURE, code)
    assert "Zhang" not in json.dumps(entry.details) and PATIENT_ID not in json.dumps(entry.details)
    return refused.value


def test_recognizable_visual_features_are_refused(upload, asset_storage):
    refusal = assert_dicom_refused(
        upload, asset_storage, dicom_bytes(modality="CT", sop_class=CTImageStorage, recognizable="YES"), RECOGNIZABLE
    )
    assert refusal.message == str(dicom.DICOM_RECOGNIZABLE)
    assert upload(dicom_bytes(modality="CT", sop_class=CTImageStorage, recognizable="NO"), "ct.dcm").page_count == 1


@pytest.mark.parametrize(
    ("modality", "sop_class", "kind"),
    [
        ("US", UltrasoundImageStorage, "Modality US"),
        ("SC", SecondaryCaptureImageStorage, "Modality SC"),
        ("XA", XRayAngiographicImageStorage, "Modality XA"),
        ("ES", VLEndoscopicImageStorage, "Modality ES"),
        ("OT", SecondaryCaptureImageStorage, "Modality OT"),
        ("CT", MultiFrameGrayscaleWordSecondaryCaptureImageStorage, "Secondary Capture"),
        ("MR", SecondaryCaptureImageStorage, "Secondary Capture"),
    ],
)
def test_images_that_commonly_carry_burned_in_text_need_burned_in_annotation_no(
    upload, asset_storage, modality, sop_class, kind
):
    for burned_in in (None, "", "UNKNOWN"):
        data = dicom_bytes(modality=modality, sop_class=sop_class, burned_in=burned_in)
        refusal = assert_dicom_refused(upload, asset_storage, data, UNCONFIRMED)
        assert refusal.message == str(dicom.DICOM_BURNED_IN_UNCONFIRMED).format(kind=kind)
        assert "BurnedInAnnotation = NO" in refusal.message
    assert upload(dicom_bytes(modality=modality, sop_class=sop_class, burned_in="NO"), "ok.dcm").page_count == 1


def test_multi_valued_flags_and_an_empty_modality_do_not_slip_through(upload, asset_storage):
    """A code string may hold several values (YES\\YES): each is read, never the list's text; and
    an ultrasound or visible-light SOP class is known by its class when the Modality is empty."""
    cases = [
        (dict(modality="CT", sop_class=CTImageStorage, recognizable="YES\\YES"), RECOGNIZABLE),
        (dict(modality="CT", sop_class=CTImageStorage, burned_in="NO\\YES"), "dicom_burned_in_annotation"),
        (dict(modality="US\\US", sop_class=CTImageStorage, burned_in=None), UNCONFIRMED),
        (dict(modality="", sop_class=UltrasoundImageStorage, burned_in=None), UNCONFIRMED),
        (dict(modality="", sop_class=VLEndoscopicImageStorage, burned_in=None), UNCONFIRMED),
        (dict(modality="XC", sop_class=CTImageStorage, burned_in=None), UNCONFIRMED),
    ]
    for fields, code in cases:
        assert_dicom_refused(upload, asset_storage, dicom_bytes(**fields), code)
    data = dicom_bytes(modality="", sop_class=UltrasoundImageStorage, burned_in="NO\\NO")
    assert upload(data, "us.dcm").page_count == 1  # every value says NO


def test_a_ct_image_without_burned_in_annotation_is_still_accepted(upload):
    assert upload(dicom_bytes(modality="CT", sop_class=CTImageStorage, burned_in=None), "ct.dcm").page_count == 1


def test_the_burned_in_refusal_is_translated():
    from django.utils import translation

    with translation.override("en"):
        english = str(dicom.DICOM_BURNED_IN_UNCONFIRMED), str(dicom.DICOM_RECOGNIZABLE)
    with translation.override("zh-hans"):
        chinese = str(dicom.DICOM_BURNED_IN_UNCONFIRMED), str(dicom.DICOM_RECOGNIZABLE)
    assert chinese[0] != english[0] and "{kind}" in chinese[0] and "BurnedInAnnotation = NO" in chinese[0]
    assert chinese[1] != english[1] and "RecognizableVisualFeatures = YES" in chinese[1]


def test_identifying_file_meta_elements_are_removed_and_listed_without_values(upload):
    extra = {
        "SendingApplicationEntityTitle": "SENDER-ZHANG",
        "ReceivingApplicationEntityTitle": "RECEIVER-RIVERSIDE",
        "SourcePresentationAddress": "http://pacs.riverside.example/zhang",
        "ImplementationVersionName": "TESTWRITER_1",
    }
    original = dicom_bytes(meta_extra=extra)
    asset = upload(original, "meta.dcm")
    stored = stored_bytes(asset)
    for secret in (b"SCANNER01", b"SENDER-ZHANG", b"RECEIVER-RIVERSIDE", b"pacs.riverside"):
        assert secret not in stored, secret
    meta = dcmread(io.BytesIO(stored)).file_meta
    for keyword in (
        "SourceApplicationEntityTitle",
        "SendingApplicationEntityTitle",
        "ReceivingApplicationEntityTitle",
        "SourcePresentationAddress",
    ):
        assert keyword not in meta, keyword
    assert meta.TransferSyntaxUID == ExplicitVRLittleEndian and meta.MediaStorageSOPClassUID
    removed = last_upload_entry().details["deidentification"]["removed"]
    for listed in (
        "(0002,0016) SourceApplicationEntityTitle",
        "(0002,0017) SendingApplicationEntityTitle",
        "(0002,0018) ReceivingApplicationEntityTitle",
        "(0002,0026) SourcePresentationAddress",
    ):
        assert listed in removed, listed
    written = json.dumps(last_upload_entry().details)
    for secret in ("SENDER", "RECEIVER", "riverside", "SCANNER01"):
        assert secret not in written, secret
