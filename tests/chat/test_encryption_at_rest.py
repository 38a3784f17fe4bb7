"""Business text at rest: a chat turn with a file uploaded from the chat
pane and an extraction of that file leave none of their text in a ``pg_dump`` of the database —
messages, title, file name, the model's raw answer, the extracted fields, nor the audit trail's
previews of them — and deleting the conversation (which takes its chat-only file, and the file
its extraction) leaves nothing of them that decrypts.

Real PostgreSQL, real ``pg_dump``, the real websocket consumer on the tiny demo model, the real
upload view. One stand-in: the extraction's model answers come from a script (random demo
weights never write an invoice), so that the extracted fields carry marker strings.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
from urllib.parse import quote

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from assets import text_crypto
from assets.models import Asset
from compliance.events import EventType
from compliance.models import AuditEntry
from departments.tenancy import all_departments, department_scope
from inference.engine.handles import Result, Usage
from inference.extraction.models import Extraction
from inference.extraction.services import BUILTIN_TEMPLATES, extraction_run, templates_builtin_ensure
from inference.models import Conversation, ConversationMessage, TaskTemplate
from tests.chat.conftest import SHORT_TURN, frame, open_chat, png_bytes, receive_until
from tests.conftest import require_postgresql, requirement_missing

pytestmark = pytest.mark.django_db(transaction=True)


class ScriptedAnswers:
    """The engine's interface with the demo model's identity, answering a fixed text."""

    def __init__(self, engine, text: str) -> None:
        self.engine, self.text, self.limits = engine, text, engine.limits

    def info(self):
        return self.engine.info()

    def submit(self, messages, **kwargs):
        text = self.text

        class Handle:
            def result(self):
                return Result(text=text, usage=Usage(20, 40, 0.0, 0.01, 0.05, 800.0, 1), finish_reason="stop")

        return Handle()


def pg_dump_tables() -> dict[str, str]:
    """The plain-SQL data dump of the test database, as {table: its COPY block}."""
    require_postgresql("the dump of business text")
    if shutil.which("pg_dump") is None:
        requirement_missing("pg_dump is not installed")
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="") + (":" + quote(db["PASSWORD"], safe="") if db.get("PASSWORD") else "")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    url = f"postgresql://{auth}@{db.get('HOST') or 'localhost'}{port}/{quote(db['NAME'], safe='')}"
    dump = subprocess.run(
        ["pg_dump", "--format=plain", "--data-only", "--no-owner", "--no-privileges", f"--dbname={url}"],
        check=True,
        capture_output=True,
    ).stdout.decode("utf-8")
    tables: dict[str, str] = {}
    for match in re.finditer(r"^COPY public\.(\w+) .*? FROM stdin;\n(.*?)^\\\.$", dump, re.M | re.S):
        tables[match.group(1)] = match.group(2)
    assert "inference_conversationmessage" in tables and "assets_asset" in tables, "the dump was not parsed"
    return tables


def audited_events() -> set[str]:
    return set(AuditEntry.objects.values_list("event_type", flat=True))


def tables_showing(tables: dict[str, str], needles: list[str]) -> dict[str, set[str]]:
    """{needle: tables whose data shows it (as text, or hex-encoded in a bytea column)}."""
    found: dict[str, set[str]] = {}
    for needle in needles:
        forms = (needle, needle.encode("utf-8").hex())
        hits = {table for table, data in tables.items() if any(form in data for form in forms)}
        if hits:
            found[needle] = hits
    return found


async def test_a_dump_shows_no_business_text_and_deletion_leaves_nothing_that_decrypts(personas, chat_engine, settings):
    settings.EXTRACTION_MAX_NEW_TOKENS = 64
    settings.STRUCTURED_OUTPUT_ATTEMPTS = 1
    token = secrets.token_hex(4)
    markers = {
        "message": f"SEALMSG{token} what does this invoice say",
        "file": f"SEALFILE{token}",
        "seller": f"SEALSELLER{token}",
        "buyer": f"SEALBUYER{token}",
        "raw": f"SEALRAW{token}",
    }
    # 1. bob uploads a file from the chat pane (the real view) and asks about it over the websocket.
    chat = await open_chat("bob")
    upload = await sync_to_async(chat.http_client.post)(
        "/d/finance/chat/upload/",
        {"file": SimpleUploadedFile(f"{markers['file']}.png", png_bytes(), content_type="image/png")},
    )
    assert upload.status_code == 200, upload.content
    asset_id = upload.json()["files"][0]["id"]
    await chat.send_to(text_data=frame("turn.start", text=markers["message"], assets=[asset_id], params=SHORT_TURN))
    _frames, done = await receive_until(chat, {"done", "error"})
    assert done["type"] == "done", done
    await chat.disconnect()

    # 2. an extraction of that file; the model "answers" an invoice with marker fields.
    invoice = {
        **{key: "x" for key in BUILTIN_TEMPLATES["vat-invoice"]["json_schema"]["required"]},
        "invoice_type": "增值税专用发票",
        "invoice_number": "04419876",
        "invoice_date": "2025-03-14",
        "seller_name": markers["seller"],
        "buyer_name": markers["buyer"],
        "seller_tax_id": "91310115MA1H7GXX3B",
        "amount_excluding_tax": 11327.43,
        "tax_amount": 1472.57,
        "total_amount": 12800.0,
        "invoice_code": markers["raw"],
    }
    answer = json.dumps(invoice, ensure_ascii=False, indent=1)  # the raw answer as the model wrote it

    def extract() -> Extraction:
        department = personas.department_a
        with department_scope(department):
            templates_builtin_ensure(department=department)
            template = TaskTemplate.objects.get(slug="vat-invoice")
            asset = Asset.objects.get(pk=asset_id)
            return extraction_run(
                department=department, template=template, asset=asset, engine=ScriptedAnswers(chat_engine, answer)
            )

    extraction = await sync_to_async(extract)()
    assert extraction.status == "valid", extraction.problems

    def stored_state():
        """What the application reads back (not vacuous: the markers are there, decrypted), and
        what the database itself holds: ciphertext with the context that opens it, and the keys."""
        with all_departments(reason="test reads back what was stored"):
            conversation = Conversation.objects.get(pk=done["conversation"])
            messages = list(conversation.messages.order_by("pk"))
            asset = Asset.objects.get(pk=asset_id)
            stored = Extraction.objects.get(pk=extraction.pk)
            assert markers["message"] in messages[0].content and conversation.title.startswith("SEALMSG")
            assert asset.original_name == f"{markers['file']}.png"
            assert stored.result["seller_name"] == markers["seller"] and markers["raw"] in stored.raw_answer

            def column(model, pk, field):
                return model._base_manager.filter(pk=pk).values_list(field, flat=True)[0]

            def context(owner, label, field, row=""):
                return {"label": label, "field": field, "owner_ref": owner.text_key_ref, "row": row}

            sealed = [
                (
                    column(Conversation, conversation.pk, "title"),
                    context(conversation, "inference.conversation", "title"),
                )
            ]
            for message in messages:
                sealed.append(
                    (
                        column(ConversationMessage, message.pk, "content"),
                        context(
                            conversation,
                            "inference.conversationmessage",
                            "content",
                            f"{message.ref.hex}|{message.role}",
                        ),
                    )
                )
            sealed.append((column(Asset, asset.pk, "original_name"), context(asset, "assets.asset", "original_name")))
            for field in ("result", "raw_answer", "rule_outcomes", "problems"):
                sealed.append((column(Extraction, stored.pk, field), context(stored, "inference.extraction", field)))
            keys = [bytes(conversation.text_key), bytes(asset.text_key), bytes(stored.text_key)]
            # The contexts are right: each value opens with its own owner's key.
            for (value, where), owner in zip(
                sealed, [conversation] * (1 + len(messages)) + [asset] + [stored] * 4, strict=True
            ):
                if isinstance(value, text_crypto.SealedValue):
                    text_crypto.open_text(owner.text_cipher(), value.text, **where)
        return sealed, keys

    sealed, keys = await sync_to_async(stored_state)()
    values = [value for value, _where in sealed if value not in (None, "")]
    assert len(values) >= 6 and all(isinstance(value, text_crypto.SealedValue) for value in values), sealed
    assert all(value.text.startswith(text_crypto.SEAL_PREFIX) for value in values)

    # 3. the dump: no marker in any table but the audit trail's (follow-up, see above).
    tables = await sync_to_async(pg_dump_tables)()
    # Every table, the audit trail's included: its previews are sealed under the same objects'
    # keys (compliance/preview_crypto.py), and the trail did record these actions.
    assert tables_showing(tables, list(markers.values()) + [markers["message"].split()[0]]) == {}
    assert {"asset.upload", "inference.call", "inference.extraction"} <= await sync_to_async(audited_events)()
    # The ciphertext is what the dump holds instead.
    assert all(any(value.text in data for data in tables.values()) for value in values)

    # 4. bob deletes the conversation: its chat-only file goes with it, and the file's extraction.
    delete = await sync_to_async(chat.http_client.post)(f"/d/finance/chat/conversations/{done['conversation']}/delete/")
    assert delete.status_code == 302

    def after_deletion():
        with all_departments(reason="test looks for what deletion left"):
            assert not Conversation.objects.filter(pk=done["conversation"]).exists()
            assert not Asset.objects.filter(pk=asset_id).exists()
            assert not Extraction.objects.filter(pk=extraction.pk).exists()
            entry = AuditEntry.objects.filter(event_type=EventType.ASSET_DELETE, object_id=asset_id).get()
            assert entry.details["deleted_with"]["inference.extraction"]["ids"] == [str(extraction.pk)]
            # No text key left in the database opens any of the values sealed before deletion.
            owners = [
                (model._meta.label_lower, key_id, bytes(stored))
                for model in text_crypto.text_key_owner_models()
                for key_id, stored in model._base_manager.exclude(text_key=None).values_list("text_key_id", "text_key")
            ]
        # Under the context that opened it before, no key still in the database opens any of it.
        openable = 0
        for label, key_id, stored in owners:
            cipher = text_crypto.text_key_open(label, key_id, stored)
            for value, where in sealed:
                if isinstance(value, text_crypto.SealedValue):
                    try:
                        text_crypto.open_text(cipher, value.text, **where)
                        openable += 1
                    except text_crypto.TextSealError:
                        pass
        return openable

    assert await sync_to_async(after_deletion)() == 0
    tables = await sync_to_async(pg_dump_tables)()
    leftovers = [value.text for value in values if any(value.text in data for data in tables.values())]
    assert leftovers == []
    assert not [key for key in keys if any(key.hex() in data for data in tables.values())]
    assert tables_showing(tables, list(markers.values())) == {}
