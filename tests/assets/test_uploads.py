"""``assets.uploads``: the one upload path behind the portal page, the chat pane and the REST API.

Each entry point is driven through the real stack (URL, middleware, view); the same file must
come out the same way — one call to ``RequestUpload.store``, the same status and reason code,
and the same audit entry (only the actor differs: a person or an API key).
"""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from assets import uploads
from compliance.events import EventType, Outcome
from compliance.models import AuditEntry
from compliance.preview_crypto import entry_previews_open
from departments.tenancy import department_scope
from inference.models import ChatUpload
from tests.assets import samples
from tests.assets.conftest import stored_files

pytestmark = pytest.mark.django_db

ENTRY_POINTS = ["portal", "chat", "api"]


@pytest.fixture
def store_calls(monkeypatch):
    """Every ``RequestUpload.store`` call, with the result it returned."""
    calls: list[uploads.UploadResult] = []
    original = uploads.RequestUpload.store

    def spy(self, **kwargs):
        result = original(self, **kwargs)
        calls.append(result)
        return result

    monkeypatch.setattr(uploads.RequestUpload, "store", spy)
    return calls


def refusal_entry() -> tuple:
    """The newest upload entry as the auditor reads it: the file name is sealed (docs/audit.md),
    opened here, and compared with what the entry was written with."""
    entry = AuditEntry.objects.filter(event_type=EventType.ASSET_UPLOAD).order_by("-sequence").first()
    opened = entry_previews_open(entry)
    details = {key: value for key, value in opened.plain_details.items() if key != "object_repr"}
    return (
        entry.event_type,
        entry.outcome,
        entry.department_slug,
        entry.object_type,
        entry.object_id,
        opened.object_repr if opened.object_repr is not None else entry.object_repr,
        details,
    )


def wrong_type() -> list[SimpleUploadedFile]:
    return [SimpleUploadedFile("page.png", b"<svg onload=alert(1)>", "image/png")]


def too_large_to_read() -> list[SimpleUploadedFile]:
    return [SimpleUploadedFile("big.png", samples.noisy_png((1000, 1000)), "image/png")]


def too_large_while_streaming() -> list[SimpleUploadedFile]:
    return [SimpleUploadedFile("big.png", samples.noisy_png((700, 700)), "image/png")]


REFUSALS = {
    # name: (files, reason code, status, audited name)
    "wrong type": (wrong_type, "unsupported_type", 400, "page.png"),
    "too large, refused unread": (too_large_to_read, "too_large", 413, ""),
    "too large, refused while streaming": (too_large_while_streaming, "too_large", 413, "big.png"),
    "no file": (list, "no_file", 400, ""),
}


@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_the_same_refusal_is_answered_and_audited_alike_through_portal_chat_and_api(
    post_file, store_calls, personas, settings, asset_storage, refusal
):
    settings.MAX_UPLOAD_MB = 1
    make_files, code, status, audited_name = REFUSALS[refusal]
    entries = {}
    for entry_point in ENTRY_POINTS:
        before = AuditEntry.objects.count()
        response = post_file(entry_point, make_files())
        assert response.status_code == status, (entry_point, response.content)
        assert response.json()["code"] == code, entry_point
        assert AuditEntry.objects.count() == before + 1, f"{entry_point}: one audit entry per refusal"
        entries[entry_point] = refusal_entry()
        actor = AuditEntry.objects.order_by("-sequence").first().actor_name
        assert actor == (post_file.key.audit_name if entry_point == "api" else "bob")
    assert entries["portal"] == entries["chat"] == entries["api"]
    assert entries["api"] == (
        EventType.ASSET_UPLOAD,
        Outcome.FAILURE,
        personas.department_a.slug,
        "assets.asset",
        "",
        audited_name,
        {"reason": code, "size": None},
    )
    assert len(store_calls) == 3, "each entry point stores through RequestUpload.store"
    assert stored_files(asset_storage) == []


def test_a_stored_file_comes_out_of_the_one_path_for_every_entry_point(post_file, store_calls, personas):
    answers = {}
    for number, entry_point in enumerate(ENTRY_POINTS):
        image = samples.image_bytes("PNG", (40 + number, 30))
        response = post_file(entry_point, [SimpleUploadedFile(f"{entry_point}.png", image, "image/png")])
        assert response.status_code == (201 if entry_point == "api" else 200), response.content
        answers[entry_point] = response.json()
    assert [len(result.stored) for result in store_calls] == [1, 1, 1]
    stored = {entry_point: result.stored[0] for entry_point, result in zip(ENTRY_POINTS, store_calls, strict=True)}
    assert answers["api"]["id"] == str(stored["api"].asset.pk) and answers["api"]["deduplicated"] is False
    for entry_point in ("portal", "chat"):
        (item,) = answers[entry_point]["files"]
        assert item["id"] == str(stored[entry_point].asset.pk) and item["deduplicated"] is False
        assert item["url"] == reverse("assets:detail", args=[personas.department_a.slug, item["id"]])
    assert answers["chat"]["files"][0]["thumbnail"].endswith(f"/files/{answers['chat']['files'][0]['id']}/thumbnail/")
    with department_scope(personas.department_a):
        marked = set(ChatUpload.objects.values_list("asset_id", flat=True))
    assert marked == {stored["chat"].asset.pk}  # only the chat pane's upload belongs to the chat


def test_the_chat_answers_json_whatever_the_client_accepts(client, personas, asset_storage):
    client.force_login(personas.member)
    response = client.post(
        reverse("chat:upload", args=[personas.department_a.slug]),
        {"file": wrong_type()},
        HTTP_ACCEPT="text/html",
    )
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert response.json()["files"][0]["code"] == "unsupported_type"


def test_a_chat_upload_needs_a_post_and_a_csrf_token(personas, asset_storage):
    client = Client(enforce_csrf_checks=True)
    client.force_login(personas.member)
    url = reverse("chat:upload", args=[personas.department_a.slug])
    assert client.get(url).status_code == 405
    image = samples.image_bytes("PNG")
    assert client.post(url, {"file": SimpleUploadedFile("a.png", image, "image/png")}).status_code == 403
    assert stored_files(asset_storage) == []
