"""Previews in audit entries are sealed under their object's key.

A chat turn's, an extraction's and a file's entries hold no readable preview in the database
(the raw row is searched), the auditor console shows them decrypted to the audit administrator,
deleting the object shreds exactly its previews while the chain still verifies, entries written
before this change are counted as plaintext residue, and syslog receives hashes and ciphertext.

Real database (PostgreSQL, or SQLite when the suite runs on it), the real websocket consumer on the
tiny demo model, a real UDP syslog socket. One stand-in: the extraction's model answer comes from
a script (random demo weights never write an invoice).
"""

from __future__ import annotations

import json
import secrets

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test import Client

from assets import text_crypto
from assets.models import Asset
from assets.services import asset_delete, asset_upload
from compliance.events import EventType
from compliance.models import AuditEntry
from compliance.preview_crypto import (
    SEALED,
    STATE_LEGACY,
    STATE_OPEN,
    STATE_SHREDDED,
    STATE_UNREADABLE,
    AuditPreviewKey,
    audit_plaintext_previews_count,
    entry_previews_open,
)
from compliance.sealing import seal_pending
from compliance.services import audit_record
from compliance.verification import audit_chain_verify
from departments.tenancy import department_scope
from inference.engine.handles import Result, Usage
from inference.model_calls import Channel, ModelCall, ModelCallResult, PromptMessage, model_call_record
from tests.chat.conftest import SHORT_TURN, frame, open_chat, png_bytes, receive_until, serving_engine
from tests.compliance.conftest import raw_sql

PHONE = "13812345678"


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.ASSET_STORAGE_DIR = tmp_path / "asset-storage"
    settings.ASSET_MASTER_KEY_FILE = tmp_path / "asset-keys"


@pytest.fixture
def demo_engine(shared_demo_model):
    """The process's engine for this test, on the tiny demo model."""
    with serving_engine(shared_demo_model) as engine:
        yield engine


@pytest.fixture
async def helper_connections_closed():
    """sync_to_async helpers run on a worker thread whose connection would outlive the test database."""
    yield
    from django.db import connections

    await sync_to_async(connections.close_all)()


def stored_row(sequence: int) -> str:
    """The entry's row exactly as the database holds it, every column as text."""
    row = raw_sql("SELECT * FROM compliance_auditentry WHERE sequence = %s", [sequence])[0]
    return " ".join("" if value is None else str(value) for value in row)


def entry_of(event_type: str, **filters) -> AuditEntry:
    seal_pending(wait=True)  # an entry another thread wrote may still wait for the sealer
    return AuditEntry.objects.filter(event_type=event_type, **filters).order_by("-sequence").first()


def console_detail(user, entry: AuditEntry, language: str = "en") -> str:
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(user)
    response = client.get(f"/audit/entries/{entry.sequence}/")
    assert response.status_code == 200
    return response.content.decode()


def upload(department, user, name: str) -> Asset:
    with department_scope(department):
        return asset_upload(department=department, uploaded_by=user, stream=iter([png_bytes()]), original_name=name)


# --- the chat ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_chat_turn_preview_is_sealed_opened_for_the_auditor_and_shredded_with_its_conversation(
    personas, demo_engine, auditor, helper_connections_closed
):
    marker = f"PREVIEW{secrets.token_hex(4)}"
    chat = await open_chat("bob")
    await chat.send_to(text_data=frame("turn.start", text=f"{marker} call {PHONE} please", params=SHORT_TURN))
    _frames, first = await receive_until(chat, {"done", "error"})
    assert first["type"] == "done", first
    conversation_id = first["conversation"]
    # A second turn: its inference.start names the conversation, which exists by now.
    await chat.send_to(
        text_data=frame("turn.start", text=f"{marker} again", conversation=conversation_id, params=SHORT_TURN)
    )
    _frames, second = await receive_until(chat, {"done", "error"})
    assert second["type"] == "done", second
    await chat.disconnect()

    def sealed_state():
        seal_pending(wait=True)  # under load the turn's entries may still wait for the sealer
        calls = list(
            AuditEntry.objects.filter(
                event_type__in=[EventType.INFERENCE, EventType.INFERENCE_START],
                request_id__in=[first["request_id"], second["request_id"]],
            ).order_by("sequence")
        )
        assert len(calls) == 4
        for entry in calls:
            row = stored_row(entry.sequence)
            assert marker not in row and PHONE not in row and "138****5678" not in row, row
            assert entry.details["prompt_sha256"] in row  # hashes stay in clear
        # The first turn starts before its conversation exists: its start entry holds the hash and
        # no preview; every other entry's preview is sealed under the conversation's own key.
        first_start = (EventType.INFERENCE_START, first["request_id"])
        previewed = [e for e in calls if (e.event_type, e.request_id) != first_start]
        (unpreviewed,) = [e for e in calls if (e.event_type, e.request_id) == first_start]
        assert unpreviewed.details["prompt_preview"] == "" and SEALED not in unpreviewed.details
        for entry in previewed:
            assert entry.details["prompt_preview"].startswith(text_crypto.SEAL_PREFIX)
            assert entry.details["prompt_preview"] in stored_row(entry.sequence)  # the chain holds the ciphertext
        assert {e.details[SEALED]["owner"] for e in previewed} == {"inference.conversation"}
        return previewed

    calls = await sync_to_async(sealed_state)()

    def auditor_reads(entry: AuditEntry) -> str:
        opened = entry_previews_open(entry)
        assert opened.state == STATE_OPEN and opened.fields == ["prompt_preview"]
        assert opened.details["prompt_preview"].startswith(marker)
        assert "138****5678" in entry_previews_open(calls[0]).details["prompt_preview"]
        return console_detail(auditor, entry)

    page = await sync_to_async(auditor_reads)(calls[1])
    assert marker in page and PHONE not in page
    viewed = await sync_to_async(entry_of)(EventType.AUDIT_VIEW, object_id=str(calls[1].sequence))
    assert viewed.details == {"view": "detail", "previews": "open", "previews_opened": ["prompt_preview"]}

    # bob deletes the conversation: exactly its previews are shredded, the chain still verifies.
    client = await sync_to_async(Client)()
    await sync_to_async(client.force_login)(personas.member)
    response = await sync_to_async(client.post)(f"/d/finance/chat/conversations/{conversation_id}/delete/")
    assert response.status_code == 302

    def after_deletion():
        states = {}
        for entry in calls:
            fresh = AuditEntry.objects.get(sequence=entry.sequence)
            assert fresh.details == entry.details and fresh.hash == entry.hash  # not one byte changed
            states[(entry.event_type, entry.request_id)] = entry_previews_open(fresh).state
        result = audit_chain_verify()
        assert result.ok, result
        page = console_detail(auditor, calls[-1])
        return states, page

    states, page = await sync_to_async(after_deletion)()
    assert len(states) == 3 and set(states.values()) == {STATE_SHREDDED}  # every preview of the conversation
    assert marker not in page and "Shredded" in page


# --- files and extractions ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_file_name_is_sealed_under_the_file_key_and_shredded_with_the_file(personas, auditor, system_context):
    name = f"FILENAME{secrets.token_hex(4)}.png"
    asset = upload(personas.department_a, personas.member, name)
    uploaded = entry_of(EventType.ASSET_UPLOAD, object_id=str(asset.pk))
    row = stored_row(uploaded.sequence)
    assert name not in row and "FILENAME" not in row
    assert asset.sha256 in row  # the hash stays in clear
    assert uploaded.object_repr == f"asset {asset.pk}"
    assert uploaded.details[SEALED] == {"owner": "assets.asset", "id": str(asset.pk), "fields": ["name", "object_repr"]}
    opened = entry_previews_open(uploaded)
    assert opened.state == STATE_OPEN and opened.details["name"] == name and opened.object_repr.startswith(name)
    assert opened.plain_details == {
        "name": name,
        "object_repr": opened.object_repr,
        **{key: value for key, value in uploaded.details.items() if key not in ("name", "object_repr", SEALED)},
    }
    page = console_detail(auditor, uploaded)
    assert name in page

    # Another upload of the same bytes is another reference with a key of its own.
    other = upload(personas.department_a, personas.admin, "other.png")
    with department_scope(personas.department_a):
        asset_delete(asset=Asset.objects.get(pk=asset.pk), acting_user=personas.member)
    deleted = entry_of(EventType.ASSET_DELETE, object_id=str(asset.pk))
    assert name not in stored_row(deleted.sequence)
    assert entry_previews_open(uploaded).state == STATE_SHREDDED
    assert entry_previews_open(deleted).state == STATE_SHREDDED
    assert entry_previews_open(entry_of(EventType.ASSET_UPLOAD, object_id=str(other.pk))).state == STATE_OPEN
    assert audit_chain_verify().ok
    page = console_detail(auditor, uploaded)
    assert name not in page and "Shredded" in page and "was deleted with its object" in page
    page = console_detail(auditor, uploaded, "zh-hans")
    assert name not in page and "已粉碎" in page and "已随其对象删除" in page
    assert audit_plaintext_previews_count()["total"] == 0


@pytest.mark.django_db
def test_a_refused_upload_names_its_file_under_the_month_key(personas, system_context, client):
    client.force_login(personas.member)
    name = f"REFUSED{secrets.token_hex(4)}.png"
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.post("/d/finance/files/upload/", {"file": SimpleUploadedFile(name, b"<svg onload=1>", "image/png")})
    refused = entry_of(EventType.ASSET_UPLOAD, outcome="failure")
    assert refused is not None and refused.object_type == "assets.asset"
    assert name not in stored_row(refused.sequence) and refused.object_repr == "asset"
    opened = entry_previews_open(refused)
    assert opened.month_key and opened.object_repr == name
    key = AuditPreviewKey.objects.get()
    assert (key.department_id, key.month) == (personas.department_a.pk, f"{refused.timestamp:%Y-%m}")


@pytest.mark.django_db
def test_an_extraction_preview_follows_the_extraction(personas, auditor, system_context, demo_engine):
    from inference.extraction.models import Extraction
    from inference.extraction.services import BUILTIN_TEMPLATES, extraction_run, templates_builtin_ensure
    from inference.models import TaskTemplate

    department = personas.department_a
    asset = upload(department, personas.member, "invoice.png")
    invoice = {key: "x" for key in BUILTIN_TEMPLATES["vat-invoice"]["json_schema"]["required"]}

    class ScriptedEngine:
        limits = demo_engine.limits

        def info(self):
            return demo_engine.info()

        def submit(self, messages, **kwargs):
            answer = json.dumps(invoice)

            class Handle:
                def result(self):
                    return Result(text=answer, usage=Usage(20, 40, 0.0, 0.01, 0.05, 800.0, 1), finish_reason="stop")

            return Handle()

    with department_scope(department):
        templates_builtin_ensure(department=department)
        template = TaskTemplate.objects.get(slug="vat-invoice")
        extraction = extraction_run(department=department, template=template, asset=asset, engine=ScriptedEngine())
    call = entry_of(EventType.INFERENCE, object_id=str(extraction.pk))
    assert call.details["channel"] == "extraction"
    assert call.details[SEALED] == {
        "owner": "inference.extraction",
        "id": str(extraction.pk),
        "fields": ["prompt_preview"],
    }
    assert "Extract the fields" not in stored_row(call.sequence)
    assert entry_previews_open(call).details["prompt_preview"] == "Extract the fields from this document."
    assert "Extract the fields from this document." in console_detail(auditor, call)

    # The file's deletion takes its extraction, and the extraction's key its preview.
    with department_scope(department):
        asset_delete(asset=Asset.objects.get(pk=asset.pk), acting_user=personas.member)
        assert not Extraction.objects.filter(pk=extraction.pk).exists()
    assert entry_previews_open(call).state == STATE_SHREDDED
    assert audit_chain_verify().ok


# --- what is not sealed, what was not, what does not open ---------------------------------------


def v1_call(text: str) -> ModelCall:
    return ModelCall(
        channel=Channel.V1,
        model="demo",
        model_sha256="0" * 64,
        prompt=(PromptMessage("user", text),),
        preview=text,
    )


def legacy_entry(details: dict, **fields) -> None:
    """An entry as the previous release wrote it (plaintext preview), inserted as its process
    did: into the pending table, then chained by the next seal."""
    from django.utils import timezone

    from compliance.chain import canonical_json

    values = {
        "timestamp": connection.ops.adapt_datetimefield_value(timezone.now()),
        "actor_type": "system",
        "actor_id": "",
        "actor_name": "system",
        "department_id": None,
        "department_slug": "",
        "event_type": str(EventType.INFERENCE),
        "outcome": "success",
        "object_type": "",
        "object_id": "",
        "object_repr": "",
        "source_ip": None,
        "user_agent": "",
        "request_id": "",
        "details": canonical_json(details),
        "format_version": 4,
        **fields,
    }
    raw_sql(
        f"INSERT INTO compliance_auditpending ({', '.join(values)}) VALUES ({', '.join(['%s'] * len(values))})",  # noqa: S608  (test SQL from constants)
        list(values.values()),
    )


@pytest.mark.django_db
def test_entries_written_before_are_counted_as_plaintext_and_shown_as_such(personas, auditor, system_context):
    assert audit_plaintext_previews_count() == {"prompt_previews": 0, "file_names": 0, "total": 0}
    model_call_record(
        v1_call("sealed today"), ModelCallResult(outcome="success", latency_ms=1.0), department=personas.department_a
    )
    upload(personas.department_a, personas.member, "today.png")
    audit_record(event_type=EventType.LOGIN, details={"name": "not a file", "prompt_preview": ""})
    assert audit_plaintext_previews_count()["total"] == 0

    legacy_entry({"prompt_preview": "LEGACYPROMPT 138****5678", "prompt_sha256": "a" * 64})
    legacy_entry(
        {"name": "legacy.png", "sha256": "b" * 64},
        event_type=str(EventType.ASSET_UPLOAD),
        object_type="assets.asset",
        object_id="0b0e2a3c",
        object_repr="legacy.png (bbbbbbbbbbbb)",
    )
    legacy_entry(
        {"sha256": "b" * 64},
        event_type=str(EventType.ASSET_VIEW),
        object_type="assets.asset",
        object_id="0b0e2a3c",
        object_repr="legacy.png (bbbbbbbbbbbb)",
    )
    audit_record(event_type=EventType.LOGIN, wait_for_chain=True)  # seals what is pending
    assert audit_plaintext_previews_count() == {"prompt_previews": 1, "file_names": 2, "total": 3}
    legacy = AuditEntry.objects.get(event_type=EventType.INFERENCE, department_id=None)
    assert entry_previews_open(legacy).state == STATE_LEGACY
    assert "Written before previews were encrypted" in console_detail(auditor, legacy)
    assert "写于预览加密之前" in console_detail(auditor, legacy, "zh-hans")
    assert audit_chain_verify().ok


@pytest.mark.django_db
def test_a_sealed_value_moved_to_another_field_does_not_open(personas, system_context):
    asset = upload(personas.department_a, personas.member, "moved.png")
    entry = entry_of(EventType.ASSET_UPLOAD, object_id=str(asset.pk))
    moved = AuditEntry(**{f.attname: getattr(entry, f.attname) for f in AuditEntry._meta.concrete_fields})
    moved.details = {**entry.details, "name": entry.details["object_repr"], "object_repr": entry.details["name"]}
    assert entry_previews_open(moved).state == STATE_UNREADABLE


@pytest.fixture
def previews_purger():
    """The month keys' purger, as compliance's AppConfig registers it (name, days field)."""
    from compliance.preview_crypto import preview_keys_purge
    from compliance.retention import registered_purgers

    (registered,) = [purger for purger in registered_purgers() if purger.name == "compliance.audit_previews"]
    assert registered.purger is preview_keys_purge and registered.days_field == "conversation_days"


@pytest.mark.django_db
def test_retention_shreds_the_month_keys_of_previews_tied_to_no_object(personas, system_context, previews_purger):
    from datetime import timedelta

    from django.utils import timezone

    from compliance.retention import PurgeReport, business_data_purge, retention_policy_set

    retention_policy_set(department=personas.department_a, conversation_days=30, file_days=None, acting_user="system")
    retention_policy_set(department=personas.department_b, conversation_days=None, file_days=None, acting_user="system")
    result = ModelCallResult(outcome="success", latency_ms=1.0)
    model_call_record(v1_call("finance asks"), result, department=personas.department_a)
    model_call_record(v1_call("quality asks"), result, department=personas.department_b)
    finance, quality = (
        entry_of(EventType.INFERENCE, department_id=department.pk)
        for department in (personas.department_a, personas.department_b)
    )
    report = PurgeReport(dry_run=False)
    business_data_purge(now=timezone.now() + timedelta(days=20), report=report)  # still this month's
    assert entry_previews_open(finance).state == STATE_OPEN and not report.business

    report = PurgeReport(dry_run=False)
    business_data_purge(now=timezone.now() + timedelta(days=70), report=report)
    assert report.business == {"finance": {"compliance.audit_previews": 1}}
    assert entry_previews_open(finance).state == STATE_SHREDDED
    assert entry_previews_open(quality).details["prompt_preview"] == "quality asks"  # kept forever
    purge = entry_of(EventType.RETENTION_PURGE, department_id=personas.department_a.pk)
    assert purge.details["purger"] == "compliance.audit_previews" and purge.details["removed"] == 1
    assert audit_chain_verify().ok


# --- syslog --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_syslog_receives_hashes_and_ciphertext_never_a_readable_preview(
    personas, settings, udp_listener, system_context, django_capture_on_commit_callbacks
):
    settings.AUDIT_SYSLOG_ADDRESS = f"udp://127.0.0.1:{udp_listener.getsockname()[1]}"
    marker = f"SYSLOG{secrets.token_hex(4)}"
    with django_capture_on_commit_callbacks(execute=True):
        model_call_record(
            v1_call(f"{marker} {PHONE}"),
            ModelCallResult(outcome="success", latency_ms=1.0),
            department=personas.department_a,
        )
    message = udp_listener.recv(65535).decode()
    payload = json.loads(message.split("platform-audit: ", 1)[1])
    entry = AuditEntry.objects.get(sequence=payload["sequence"])
    assert marker not in message and "5678" not in message
    assert payload["hash"] == entry.hash and payload["details"]["prompt_sha256"] == entry.details["prompt_sha256"]
    assert payload["details"]["prompt_preview"] == entry.details["prompt_preview"]
    assert payload["details"]["prompt_preview"].startswith(text_crypto.SEAL_PREFIX)

    name = f"{marker}.png"
    with django_capture_on_commit_callbacks(execute=True):
        upload(personas.department_a, personas.member, name)
    message = udp_listener.recv(65535).decode()
    payload = json.loads(message.split("platform-audit: ", 1)[1])
    assert payload["event_type"] == EventType.ASSET_UPLOAD and marker not in message
    assert payload["details"]["sha256"] and payload["details"][SEALED]["owner"] == "assets.asset"


@pytest.mark.django_db
def test_a_preview_in_clear_is_withheld_from_syslog(settings, udp_listener):
    """An entry that reached the chain without being sealed (written by a release before this
    one and forwarded by hand, say) still never ships its preview readable."""
    from compliance.forwarding import forward_entry

    settings.AUDIT_SYSLOG_ADDRESS = f"udp://127.0.0.1:{udp_listener.getsockname()[1]}"
    forward_entry({"sequence": 7, "hash": "c" * 64, "details": {"prompt_preview": "CLEARTEXT", "prompt_sha256": "d"}})
    payload = json.loads(udp_listener.recv(65535).decode().split("platform-audit: ", 1)[1])
    assert "CLEARTEXT" not in json.dumps(payload) and set(payload["details"]["prompt_preview"]) == {"withheld_sha256"}
