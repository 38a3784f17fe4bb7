"""The chat pages under /d/<slug>/: three personas, conversations, uploads, the administrator's
views under the department's content policy, task templates, status, and retention."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from assets.models import Asset
from compliance.events import EventType
from compliance.models import AuditEntry
from compliance.retention import purge_expired, retention_policy_set
from departments.tenancy import all_departments, department_scope
from inference.chat.services import chat_policy_set, chat_upload_mark
from inference.extraction.services import BUILTIN_TEMPLATES
from inference.models import ChatUpload, Conversation, ConversationMessage, TaskTemplate
from tests.chat.conftest import png_bytes

pytestmark = pytest.mark.django_db


def home(slug="finance"):
    return reverse("chat:home", args=[slug])


def last_entry(event_type):
    return AuditEntry.objects.filter(event_type=event_type).order_by("-sequence").first()


# --- the page ---------------------------------------------------------------------------------------


def test_member_sees_the_chat_page_with_own_conversations_only(client, personas, conversation_of):
    mine = conversation_of(personas.member, prompt="my question")
    theirs = conversation_of(personas.admin, prompt="admin question")
    client.force_login(personas.member)
    response = client.get(home(), HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="chat-root"' in page and 'data-ws-path="/ws/d/finance/chat/"' in page
    assert f"?c={mine.pk}" in page and f"?c={theirs.pk}" not in page
    assert response.context["membership"].role == "member"
    # No inline script (the production CSP forbids it): every script has a src, or is JSON data.
    for tag in re.findall(r"<script[^>]*>", page):
        assert "src=" in tag or 'type="application/json"' in tag, tag
    assert "/static/js/chat.js" in page


def test_the_page_is_translated(client, personas):
    client.force_login(personas.member)
    client.cookies["django_language"] = "zh-hans"
    page = client.get(home(), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "新对话" in page and "发送" in page


def test_an_open_conversation_shows_its_messages_escaped(client, personas, conversation_of):
    conversation = conversation_of(personas.member)
    client.force_login(personas.member)
    page = client.get(home(), {"c": conversation.pk}).content.decode()
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x</script>" not in page
    assert "data-markdown" in page


def test_someone_elses_conversation_answers_404_and_is_audited(client, personas, conversation_of):
    theirs = conversation_of(personas.admin)
    client.force_login(personas.member)
    assert client.get(home(), {"c": theirs.pk}).status_code == 404
    denial = last_entry(EventType.ACCESS_DENIED)
    assert denial.actor_name == "bob" and denial.object_id == str(theirs.pk)
    assert client.post(reverse("chat:delete", args=["finance", theirs.pk])).status_code == 404
    with department_scope(personas.department_a):
        assert Conversation.objects.filter(pk=theirs.pk).exists()


def test_outsider_gets_404(client, personas):
    client.force_login(personas.outsider)
    assert client.get(home()).status_code == 404
    assert client.get(reverse("chat:status", args=["finance"])).status_code == 404


def test_rename_and_delete_are_audited(client, personas, conversation_of):
    conversation = conversation_of(personas.member)
    client.force_login(personas.member)
    response = client.post(reverse("chat:rename", args=["finance", conversation.pk]), {"title": "发票 questions"})
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.title == "发票 questions"
    assert last_entry(EventType.CONVERSATION_UPDATE).object_id == str(conversation.pk)
    assert client.post(reverse("chat:delete", args=["finance", conversation.pk])).status_code == 302
    with department_scope(personas.department_a):
        assert not Conversation.objects.filter(pk=conversation.pk).exists()
        assert not ConversationMessage.objects.filter(conversation_id=conversation.pk).exists()
    entry = last_entry(EventType.CONVERSATION_DELETE)
    assert entry.actor_name == "bob" and entry.details["messages"] == 2


# --- uploads from the chat, and what deleting a conversation shreds ------------------------------------


def upload_through_chat(client, data: bytes, name="scan.png"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(
        reverse("chat:upload", args=["finance"]),
        {"file": SimpleUploadedFile(name, data, content_type="image/png")},
        HTTP_ACCEPT="application/json",
    )


def test_a_chat_upload_is_marked_and_shredded_with_its_conversation(client, personas, conversation_of, settings):
    client.force_login(personas.member)
    response = upload_through_chat(client, png_bytes((1, 2, 3)))
    assert response.status_code == 200, response.content
    item = response.json()["files"][0]
    assert item["thumbnail"].endswith(f"/files/{item['id']}/thumbnail/")
    with department_scope(personas.department_a):
        chat_only = Asset.objects.get(pk=item["id"])
        assert ChatUpload.objects.filter(asset=chat_only).exists()
        shared = Asset.objects.get(pk=upload_through_chat(client, png_bytes((9, 9, 9))).json()["files"][0]["id"])
    conversation = conversation_of(personas.member, assets=[chat_only, shared])
    conversation_of(personas.member, assets=[shared])  # another conversation still uses this one
    assert client.post(reverse("chat:delete", args=["finance", conversation.pk])).status_code == 302
    with department_scope(personas.department_a):
        assert not Asset.objects.filter(pk=chat_only.pk).exists()
        assert Asset.objects.filter(pk=shared.pk).exists()
    shredded = last_entry(EventType.ASSET_DELETE)
    assert shredded.object_id == str(chat_only.pk) and shredded.details["crypto_shredded"] is True


def test_deleting_a_conversation_never_shreds_another_members_chat_upload(client, personas, conversation_of):
    client.force_login(personas.admin)  # alice uploads from her chat pane but has not sent it yet
    with department_scope(personas.department_a):
        alices = Asset.objects.get(pk=upload_through_chat(client, png_bytes((3, 1, 4))).json()["files"][0]["id"])
    conversation = conversation_of(personas.member, assets=[alices])  # bob attaches it in his own chat
    client.force_login(personas.member)
    assert client.post(reverse("chat:delete", args=["finance", conversation.pk])).status_code == 302
    with department_scope(personas.department_a):
        assert Asset.objects.filter(pk=alices.pk).exists()


def test_a_deduplicated_chat_upload_is_the_uploaders_own_reference(client, personas, upload_png):
    existing = upload_png(color=(5, 6, 7))
    client.force_login(personas.member)
    item = upload_through_chat(client, png_bytes((5, 6, 7))).json()["files"][0]
    assert item["id"] != str(existing.pk) and item["deduplicated"] is True
    with department_scope(personas.department_a):
        assert ChatUpload.objects.filter(asset_id=item["id"]).exists()
        assert not ChatUpload.objects.filter(asset_id=existing.pk).exists()


def test_deleting_a_conversation_keeps_another_users_upload_of_the_same_bytes(
    client, personas, conversation_of, chat_asset_storage, django_capture_on_commit_callbacks
):
    from assets.reading import asset_plaintext_chunks

    data = png_bytes((31, 41, 59))
    client.force_login(personas.admin)  # alice uploads a scan from her chat pane and sends it
    alices = upload_through_chat(client, data).json()["files"][0]
    client.force_login(personas.member)  # bob uploads the same scan on the files page, for himself
    response = client.post(
        reverse("assets:upload", args=["finance"]),
        {"file": SimpleUploadedFile("same-scan.png", data, content_type="image/png")},
        HTTP_ACCEPT="application/json",
    )
    bobs = response.json()["files"][0]
    assert bobs["deduplicated"] is True and bobs["id"] != alices["id"]
    with department_scope(personas.department_a):
        conversation = conversation_of(personas.admin, assets=[Asset.objects.get(pk=alices["id"])])
    client.force_login(personas.admin)
    assert client.post(reverse("chat:delete", args=["finance", conversation.pk])).status_code == 302
    with department_scope(personas.department_a):
        assert not Asset.objects.filter(pk=alices["id"]).exists()  # alice's reference went with her chat
        kept = Asset.objects.get(pk=bobs["id"])
        assert b"".join(asset_plaintext_chunks(kept)) == data  # bob's file: blob and key intact
    removed = last_entry(EventType.ASSET_DELETE)
    assert removed.object_id == alices["id"]
    assert removed.details["crypto_shredded"] is False and removed.details["references_left"] == 1
    client.force_login(personas.member)  # bob's own delete is the last reference: now it is shredded
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(reverse("assets:delete", args=["finance", bobs["id"]])).status_code == 302
    assert last_entry(EventType.ASSET_DELETE).details["crypto_shredded"] is True
    assert not [path for path in chat_asset_storage.rglob("*") if path.is_file()]


# --- retention ----------------------------------------------------------------------------------------


def test_retention_purges_old_conversations_and_their_chat_only_files(personas, conversation_of, upload_png):
    department = personas.department_a
    old_upload = upload_png(color=(11, 12, 13))
    chat_upload_mark(department=department, asset=old_upload)
    regular_file = upload_png(color=(21, 22, 23))  # from the files page: not the chat's to shred
    old = conversation_of(personas.member, assets=[old_upload, regular_file])
    recent = conversation_of(personas.member)
    with department_scope(department):
        Conversation.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=40))
    retention_policy_set(department=department, conversation_days=30, file_days=None, acting_user="system")
    report = purge_expired(include_audit=False)
    assert report.business["finance"]["inference.conversations"] == 1
    with department_scope(department):
        assert list(Conversation.objects.values_list("pk", flat=True)) == [recent.pk]
        assert not Asset.objects.filter(pk=old_upload.pk).exists()
        assert Asset.objects.filter(pk=regular_file.pk).exists()
    assert last_entry(EventType.CONVERSATION_DELETE).details["reason"] == "retention"
    assert purge_expired(include_audit=False).business_total == 0  # idempotent


# --- the department administrator ---------------------------------------------------------------------


def test_admin_sees_metadata_but_not_content_by_default(client, personas, conversation_of):
    conversation = conversation_of(personas.member, prompt="secret salary question")
    client.force_login(personas.admin)
    listing = client.get(reverse("chat:admin_conversations", args=["finance"]))
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "bob" in page and "secret salary" not in page
    detail = client.get(reverse("chat:admin_conversation", args=["finance", conversation.pk]))
    assert detail.status_code == 403
    denial = last_entry(EventType.ACCESS_DENIED)
    assert denial.actor_name == "alice" and denial.object_id == str(conversation.pk)


def test_admin_reads_content_when_the_policy_allows_and_it_is_audited(client, personas, conversation_of):
    conversation = conversation_of(personas.member, prompt="secret salary question")
    chat_policy_set(department=personas.department_a, admin_may_read_content=True, acting_user="system")
    assert last_entry(EventType.SECURITY_SETTING_CHANGE).details["after"] is True
    client.force_login(personas.admin)
    detail = client.get(reverse("chat:admin_conversation", args=["finance", conversation.pk]))
    assert detail.status_code == 200 and "secret salary question" in detail.content.decode()
    viewing = last_entry(EventType.CONVERSATION_VIEW)
    assert viewing.actor_name == "alice" and viewing.object_id == str(conversation.pk)
    assert viewing.details["owner"] == "bob"


def test_admin_cannot_read_another_departments_conversation(client, personas, conversation_of):
    foreign = conversation_of(personas.outsider, department=personas.department_b)
    chat_policy_set(department=personas.department_a, admin_may_read_content=True, acting_user="system")
    client.force_login(personas.admin)
    assert client.get(reverse("chat:admin_conversation", args=["finance", foreign.pk])).status_code == 404


def test_members_are_refused_the_admin_pages(client, personas):
    client.force_login(personas.member)
    assert client.get(reverse("chat:admin_conversations", args=["finance"])).status_code == 403
    assert client.get(reverse("chat:templates", args=["finance"])).status_code == 403
    assert last_entry(EventType.ACCESS_DENIED).actor_name == "bob"


# --- task templates -----------------------------------------------------------------------------------


def test_admin_defines_a_template_that_appears_as_a_one_click_prompt(client, personas):
    client.force_login(personas.admin)
    response = client.post(
        reverse("chat:templates", args=["finance"]),
        {
            "name": "发票字段 Invoice fields",
            "instruction": "Extract the invoice fields.",
            "json_schema": '{"type": "object", "properties": {"total": {"type": "number"}}}',
            "is_active": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    with department_scope(personas.department_a):
        template = TaskTemplate.objects.get(name="发票字段 Invoice fields")
    assert template.json_schema["properties"]["total"] == {"type": "number"}
    assert last_entry(EventType.TASK_TEMPLATE_CHANGE).details["action"] == "create"
    client.force_login(personas.member)
    page = client.get(home()).content.decode()
    assert "发票字段 Invoice fields" in page and "Extract the invoice fields." in page
    # The chip fills in the instruction and names the template; the schema is added server-side
    # (tests/chat/test_template_turns.py), never shown in the page or the question's bubble.
    assert f'data-template="{template.slug}"' in page and "&quot;total&quot;" not in page


def test_template_validation_and_deactivation(client, personas):
    client.force_login(personas.admin)
    bad = client.post(
        reverse("chat:templates", args=["finance"]), {"name": "x", "instruction": "y", "json_schema": "[1"}
    )
    assert bad.status_code == 200 and "json_schema" in bad.context["form"].errors
    client.post(reverse("chat:templates", args=["finance"]), {"name": "Summary", "instruction": "Summarise."})
    with department_scope(personas.department_a):
        template = TaskTemplate.objects.get(name="Summary")
    assert not template.is_active  # the box was not ticked
    edit = client.post(
        reverse("chat:template_edit", args=["finance", template.pk]),
        {"name": "Summary", "instruction": "Summarise briefly.", "is_active": "on"},
    )
    assert edit.status_code == 302
    template.refresh_from_db()
    assert template.is_active and template.instruction == "Summarise briefly."
    client.post(reverse("chat:template_delete", args=["finance", template.pk]))
    with department_scope(personas.department_a):
        assert not TaskTemplate.objects.filter(pk=template.pk).exists()


# --- status -------------------------------------------------------------------------------------------


def test_status_reports_the_model_queue_and_device(client, personas, chat_engine):
    client.force_login(personas.member)
    data = client.get(reverse("chat:status", args=["finance"])).json()
    assert data["ready"] is True
    assert data["model"]["is_demo"] is True and data["model"]["label"].startswith("demo model")
    assert data["queue_depth"] == 0 and "host" in data["device"]


def test_status_while_no_model_is_loaded(client, personas):
    client.force_login(personas.member)
    assert client.get(reverse("chat:status", args=["finance"])).json() == {"ready": False}


def test_only_active_templates_of_the_department_appear(client, personas):
    with all_departments(reason="test set-up"):
        TaskTemplate.objects.create(department=personas.department_a, name="On", slug="on", instruction="a")
        TaskTemplate.objects.create(
            department=personas.department_a, name="Off", slug="off", instruction="b", is_active=False
        )
        TaskTemplate.objects.create(department=personas.department_b, name="Theirs", slug="t", instruction="c")
    client.force_login(personas.member)
    templates = [template.slug for template in client.get(home()).context["templates"]]
    assert sorted(templates) == sorted(["on", *BUILTIN_TEMPLATES])  # the built-in ones from the start


def test_another_departments_task_template_answers_404_and_is_audited(client, personas):
    from inference.models import TaskTemplate

    with department_scope(personas.department_b):
        foreign = TaskTemplate.objects.create(
            department=personas.department_b, name="Theirs", slug="theirs", instruction="x"
        )
    client.force_login(personas.admin)
    response = client.get(reverse("chat:template_edit", args=["finance", foreign.pk]))
    assert response.status_code == 404
    entry = last_entry(EventType.ACCESS_DENIED)
    assert entry.object_id == str(foreign.pk)
    assert entry.details["reason"] == "no such task template in this department"
