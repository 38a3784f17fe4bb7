"""The portal's file pages with the three personas, on every path, through the real stack."""

from __future__ import annotations

import hashlib
import os
import sys
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.test import RequestFactory
from django.urls import reverse

from assets.keyring import keyring_load
from assets.models import Asset
from compliance.events import EventType, Outcome
from compliance.models import AuditEntry
from compliance.preview_crypto import entry_previews_open
from departments.tenancy import all_departments, department_scope
from tests.assets import samples
from tests.assets.conftest import stored_files
from tests.support.assets import asset_upload_bytes

pytestmark = pytest.mark.django_db

JSON = {"HTTP_ACCEPT": "application/json"}


def url(name: str, department, asset=None) -> str:
    args = [department.slug] + (
        [asset if isinstance(asset, (str, uuid.UUID)) else asset.pk] if asset is not None else []
    )
    return reverse(f"assets:{name}", args=args)


@pytest.fixture
def stored(personas, system_context):
    """One file uploaded by the admin and one by the member in A, one in B."""
    result = {}
    for key, user, department, size in (
        ("admin_file", personas.admin, personas.department_a, (30, 20)),
        ("member_file", personas.member, personas.department_a, (31, 20)),
        ("b_file", personas.outsider, personas.department_b, (32, 20)),
    ):
        result[key] = asset_upload_bytes(
            samples.image_bytes("PNG", size), f"{key}.png", department=department, uploaded_by=user
        )
    return result


def last_entry() -> AuditEntry:
    return AuditEntry.objects.order_by("-sequence").first()


def asset_exists(pk) -> bool:
    with all_departments(reason="test"):
        return Asset.objects.filter(pk=pk).exists()


# --- list and detail ------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["admin", "member"])
def test_members_see_their_departments_files_only(client, personas, stored, who):
    client.force_login(getattr(personas, who))
    response = client.get(url("list", personas.department_a))
    assert response.status_code == 200
    names = {asset.original_name for asset in response.context["assets"]}
    assert names == {"admin_file.png", "member_file.png"}
    assert "b_file.png" not in response.content.decode()


def test_outsider_cannot_open_another_departments_list(client, personas, stored):
    client.force_login(personas.outsider)
    assert client.get(url("list", personas.department_a)).status_code == 404
    own = client.get(url("list", personas.department_b))
    assert {asset.original_name for asset in own.context["assets"]} == {"b_file.png"}


@pytest.mark.parametrize("who", ["admin", "member"])
def test_detail_shows_metadata_and_is_audited(client, personas, stored, who):
    client.force_login(getattr(personas, who))
    asset = stored["admin_file"]
    response = client.get(url("detail", personas.department_a, asset), HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    body = response.content.decode()
    assert asset.sha256 in body and "alice" in body
    entry = last_entry()
    assert (entry.event_type, entry.object_id, entry.actor_name) == (
        EventType.ASSET_VIEW,
        str(asset.pk),
        getattr(personas, who).username,
    )


# --- the one access helper: foreign ids answer 404 on every path, and the denial is audited ---

PATHS = [("detail", "get"), ("download", "get"), ("thumbnail", "get"), ("delete", "post")]


@pytest.mark.parametrize(("name", "method"), PATHS)
def test_foreign_asset_id_in_own_department_url_is_404_and_audited(client, personas, stored, name, method):
    client.force_login(personas.outsider)
    foreign = stored["admin_file"]
    response = getattr(client, method)(url(name, personas.department_b, foreign), REMOTE_ADDR="10.9.8.7")
    assert response.status_code == 404
    entry = last_entry()
    assert (entry.event_type, entry.outcome, entry.actor_name) == (EventType.ACCESS_DENIED, Outcome.DENIED, "charlie")
    assert entry.object_id == str(foreign.pk) and entry.source_ip == "10.9.8.7"
    assert entry.details == {
        "action": "asset.delete" if name == "delete" else "asset.view",  # the action the route is bound to
        "purpose": {"detail": "view"}.get(name, name),
        "reason": "file of another department",
    }
    assert asset_exists(foreign.pk)


@pytest.mark.parametrize(("name", "method"), PATHS)
def test_outsider_using_the_owning_departments_url_is_404_and_audited(client, personas, stored, name, method):
    client.force_login(personas.outsider)
    response = getattr(client, method)(url(name, personas.department_a, stored["member_file"]))
    assert response.status_code == 404
    assert last_entry().event_type == EventType.ACCESS_DENIED
    assert asset_exists(stored["member_file"].pk)


@pytest.mark.parametrize(("name", "method"), PATHS)
def test_unknown_id_looks_exactly_like_a_foreign_one(client, personas, stored, name, method):
    client.force_login(personas.member)
    unknown = getattr(client, method)(url(name, personas.department_a, uuid.uuid4()))
    client.force_login(personas.outsider)
    foreign = getattr(client, method)(url(name, personas.department_b, stored["member_file"]))
    assert unknown.status_code == foreign.status_code == 404
    assert unknown.content == foreign.content
    assert last_entry().event_type == EventType.ACCESS_DENIED


def test_anonymous_is_sent_to_login(client, personas, stored):
    response = client.get(url("download", personas.department_a, stored["member_file"]))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- download and thumbnail ------------------------------------------------------------------


@pytest.mark.parametrize("who", ["admin", "member"])
def test_download_streams_decrypted_bytes_as_an_attachment(client, personas, who):
    data = samples.png_with_marker()
    asset = asset_upload_bytes(data, "发票 <script>.html", department=personas.department_a, uploaded_by=personas.admin)
    client.force_login(getattr(personas, who))
    response = client.get(url("download", personas.department_a, asset))
    assert response.status_code == 200 and response.streaming
    assert b"".join(response.streaming_content) == data
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Length"] == str(len(data))
    disposition = response["Content-Disposition"]
    assert disposition.startswith("attachment; ")
    assert 'filename="_script_.html.png"' in disposition
    assert "filename*=UTF-8''%E5%8F%91%E7%A5%A8%20%3Cscript%3E.html.png" in disposition
    assert "sandbox" in response["Content-Security-Policy"]
    entry = last_entry()
    assert (entry.event_type, entry.object_id) == (EventType.ASSET_DOWNLOAD, str(asset.pk))


def test_thumbnail_is_made_on_the_fly_and_never_stored(client, personas, stored, asset_storage):
    before = stored_files(asset_storage)
    client.force_login(personas.member)
    response = client.get(url("thumbnail", personas.department_a, stored["admin_file"]))
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
    assert response["Cache-Control"] == "private, no-store"
    assert stored_files(asset_storage) == before
    entry = last_entry()  # the decrypted content was shown: audited like a view
    opened = entry_previews_open(entry)  # the file's name in the entry is sealed under its key
    assert (entry.event_type, entry.object_id, opened.object_repr) == (
        EventType.ASSET_VIEW,
        str(stored["admin_file"].pk),
        f"{stored['admin_file'].original_name} ({stored['admin_file'].sha256[:12]})",
    )
    assert {key: value for key, value in opened.plain_details.items() if key != "object_repr"} == {"view": "thumbnail"}


def test_pdf_thumbnail_renders_the_first_page(client, personas, system_context):
    asset = asset_upload_bytes(
        samples.pdf_bytes(2), "x.pdf", department=personas.department_a, uploaded_by=personas.member
    )
    client.force_login(personas.member)
    response = client.get(url("thumbnail", personas.department_a, asset))
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")


# --- delete (crypto-shredding) ------------------------------------------------------------


def test_member_deletes_own_file_and_blob_and_key_are_gone(
    client, personas, stored, asset_storage, django_capture_on_commit_callbacks
):
    asset = stored["member_file"]
    client.force_login(personas.member)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url("delete", personas.department_a, asset), **JSON)
    assert response.status_code == 200
    assert not asset_exists(asset.pk)
    assert asset.storage_name not in {path.name for path in stored_files(asset_storage)}
    entry = AuditEntry.objects.filter(event_type=EventType.ASSET_DELETE).order_by("-sequence").first()
    assert entry.object_id == str(asset.pk) and entry.details["crypto_shredded"] is True


def test_member_cannot_delete_someone_elses_file(client, personas, stored, asset_storage):
    asset = stored["admin_file"]
    client.force_login(personas.member)
    response = client.post(url("delete", personas.department_a, asset), **JSON)
    assert response.status_code == 403
    assert asset_exists(asset.pk) and asset.storage_name in {path.name for path in stored_files(asset_storage)}
    entry = last_entry()
    assert (entry.event_type, entry.outcome, entry.actor_name) == (EventType.ACCESS_DENIED, Outcome.DENIED, "bob")


def test_department_admin_deletes_any_file_of_the_department(client, personas, stored):
    client.force_login(personas.admin)
    response = client.post(url("delete", personas.department_a, stored["member_file"]))
    assert response.status_code == 302
    assert not asset_exists(stored["member_file"].pk)


def test_delete_needs_post_and_csrf(personas, stored):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(personas.admin)
    target = url("delete", personas.department_a, stored["member_file"])
    assert client.get(target).status_code == 405
    assert client.post(target).status_code == 403
    assert asset_exists(stored["member_file"].pk)


# --- classification label -------------------------------------------------------------------


def test_admin_changes_classification_member_cannot(client, personas, stored):
    asset = stored["member_file"]
    client.force_login(personas.member)
    assert client.post(url("detail", personas.department_a, asset), {"classification": 3}).status_code == 403
    client.force_login(personas.admin)
    assert client.post(url("detail", personas.department_a, asset), {"classification": 3}).status_code == 302
    with department_scope(personas.department_a):
        assert Asset.objects.get(pk=asset.pk).classification == 3
    entry = last_entry()
    assert entry.event_type == EventType.ASSET_UPDATE and entry.details["after"] == {"classification": 3}


def test_a_department_admin_cannot_lower_a_label(client, personas, stored):
    asset = stored["member_file"]
    client.force_login(personas.admin)
    assert client.post(url("detail", personas.department_a, asset), {"classification": 3}).status_code == 302
    assert client.post(url("detail", personas.department_a, asset), {"classification": 0}).status_code == 403
    with department_scope(personas.department_a):
        assert Asset.objects.get(pk=asset.pk).classification == 3
    entry = last_entry()
    assert entry.event_type == EventType.ACCESS_DENIED
    # Lowering a label is security policy: the security administrator's action, not the department's.
    assert (entry.details["action"], entry.details["reason"]) == (
        "label.manage",
        "requires administrator role security",
    )


# --- upload through the portal --------------------------------------------------------------


def test_upload_several_files_in_one_request(client, personas, asset_storage):
    client.force_login(personas.member)
    files = [
        SimpleUploadedFile("a.png", samples.image_bytes("PNG"), "image/png"),
        SimpleUploadedFile("b.pdf", samples.pdf_bytes(1), "application/pdf"),
        SimpleUploadedFile("c.png", b"<svg onload=alert(1)>", "image/png"),
    ]
    response = client.post(url("upload", personas.department_a), {"file": files}, **JSON)
    assert response.status_code == 400
    results = {item["name"]: item for item in response.json()["files"]}
    assert results["c.png"]["code"] == "unsupported_type"
    assert results["a.png"]["id"] and results["b.pdf"]["id"]
    assert len(stored_files(asset_storage)) == 2


@pytest.mark.parametrize(
    ("who", "enforce_csrf_checks", "status"),
    [("outsider", False, 404), ("member", True, 403)],
    ids=["outsider_of_the_department", "without_the_csrf_token"],
)
def test_a_refused_upload_stores_nothing(personas, asset_storage, who, enforce_csrf_checks, status):
    from django.test import Client

    client = Client(enforce_csrf_checks=enforce_csrf_checks)
    client.force_login(getattr(personas, who))
    response = client.post(
        url("upload", personas.department_a), {"file": SimpleUploadedFile("a.png", samples.image_bytes("PNG"))}
    )
    assert response.status_code == status
    assert stored_files(asset_storage) == []


def test_upload_without_a_file_is_a_clear_400(client, personas):
    client.force_login(personas.member)
    response = client.post(url("upload", personas.department_a), {"note": "x"}, **JSON)
    assert response.status_code == 400 and response.json()["code"] == "no_file"


def test_over_size_request_is_refused_before_it_is_read(client, personas, settings, asset_storage):
    settings.MAX_UPLOAD_MB = 1
    client.force_login(personas.member)
    big = SimpleUploadedFile("big.png", samples.noisy_png((1000, 1000)), "image/png")
    response = client.post(url("upload", personas.department_a), {"file": big}, **JSON)
    assert response.status_code == 413 and response.json()["code"] == "too_large"
    assert stored_files(asset_storage) == []


def test_over_size_file_inside_an_allowed_request_is_refused_while_streaming(client, personas, settings, asset_storage):
    settings.MAX_UPLOAD_MB = 1
    client.force_login(personas.member)
    # 1.5 MB: within the request allowance (limit + multipart overhead), over the file limit.
    big = SimpleUploadedFile("big.png", samples.noisy_png((700, 700)), "image/png")
    assert 1024 * 1024 < big.size < 2 * 1024 * 1024
    response = client.post(url("upload", personas.department_a), {"file": big}, **JSON)
    assert response.status_code == 413 and response.json()["code"] == "too_large"
    assert stored_files(asset_storage) == []
    entry = last_entry()
    assert (entry.event_type, entry.outcome, entry.details["reason"]) == (
        EventType.ASSET_UPLOAD,
        Outcome.FAILURE,
        "too_large",
    )


def _multipart(boundary: str, name: str, data: bytes, *, complete: bool) -> bytes:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + data + (f"\r\n--{boundary}--\r\n".encode() if complete else b"")


def test_upload_cut_off_mid_stream_is_refused_and_leaves_nothing(client, personas, asset_storage):
    client.force_login(personas.member)
    data = samples.noisy_png((600, 600))
    body = _multipart("XyZ", "cut.png", data[: len(data) // 2], complete=False)
    response = client.generic(
        "POST", url("upload", personas.department_a), body, content_type="multipart/form-data; boundary=XyZ", **JSON
    )
    assert response.status_code == 400 and response.json()["code"] == "incomplete"
    assert stored_files(asset_storage) == []
    with all_departments(reason="test"):
        assert Asset.objects.count() == 0


def test_hostile_name_through_the_portal_keeps_only_the_base_name(client, personas, asset_storage):
    client.force_login(personas.member)
    body = _multipart("B0und", "../../../../etc/cron.d/evil.png", samples.image_bytes("PNG"), complete=True)
    response = client.generic(
        "POST", url("upload", personas.department_a), body, content_type="multipart/form-data; boundary=B0und", **JSON
    )
    assert response.status_code == 200
    assert response.json()["files"][0]["name"] == "evil.png"  # Django keeps only the last path component
    (blob,) = stored_files(asset_storage)
    assert blob.is_relative_to(asset_storage / "blobs")


class WriteOpenRecorder:
    """Records every file opened for writing (``open``/``os.open`` audit events) while on."""

    installed = False
    active: list[str] | None = None

    @classmethod
    def hook(cls, event, args):
        if event != "open" or cls.active is None:
            return
        path, mode, flags = args
        writing = (mode and any(c in mode for c in "wax+")) or (flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writing and isinstance(path, (str, bytes, os.PathLike)):
            cls.active.append(os.fsdecode(path))

    def __enter__(self):
        if not WriteOpenRecorder.installed:
            sys.addaudithook(WriteOpenRecorder.hook)
            WriteOpenRecorder.installed = True
        WriteOpenRecorder.active = []
        return WriteOpenRecorder.active

    def __exit__(self, *exc):
        WriteOpenRecorder.active = None


def test_control_django_default_handlers_spool_large_uploads_in_clear(settings, tmp_path):
    """The control for the test below: the recorder does see Django's plaintext spool file."""
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "spool")
    (tmp_path / "spool").mkdir()
    data = samples.MARKER * (3 * 1024 * 1024 // len(samples.MARKER))
    request = RequestFactory().post("/x", {"file": SimpleUploadedFile("a.png", data)})
    with WriteOpenRecorder() as opened:
        spooled = request.FILES["file"]
    assert isinstance(spooled, TemporaryUploadedFile)
    assert any(path.startswith(str(tmp_path / "spool")) for path in opened)
    with open(spooled.temporary_file_path(), "rb") as handle:
        assert samples.MARKER in handle.read()
    spooled.close()


def test_large_portal_upload_never_writes_plaintext_anywhere(client, personas, settings, asset_storage, tmp_path):
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "spool")
    (tmp_path / "spool").mkdir()
    # A real PNG over FILE_UPLOAD_MAX_MEMORY_SIZE, the marker in clear in a tEXt chunk.
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", samples.MARKER.decode())
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.frombytes("RGB", (1000, 1000), os.urandom(3_000_000)).save(
        buffer, format="PNG", pnginfo=info, compress_level=0
    )
    data = buffer.getvalue()
    assert len(data) > settings.FILE_UPLOAD_MAX_MEMORY_SIZE and samples.MARKER in data
    client.force_login(personas.member)
    keyring_load()  # generated on first use: its (key) file is not part of what is checked here
    with WriteOpenRecorder() as opened:
        response = client.post(
            url("upload", personas.department_a), {"file": SimpleUploadedFile("big.png", data)}, **JSON
        )
    assert response.status_code == 200, response.content
    assert response.json()["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert opened, "the recorder saw no write at all"
    assert all(path.startswith(str(asset_storage)) for path in opened), opened
    assert os.listdir(tmp_path / "spool") == []
    for path in stored_files(asset_storage):
        assert samples.MARKER not in path.read_bytes()


def test_file_pages_speak_chinese_by_default_and_english_on_request(client, personas, stored):
    client.force_login(personas.member)
    chinese = client.get(url("list", personas.department_a)).content.decode()
    assert "选择文件" in chinese and "上传者" in chinese
    english = client.get(url("list", personas.department_a), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "choose files" in english and "Uploaded by" in english
