"""The upgrade (assets.0003, inference.0004) seals what an older release stored in clear —
file names, conversation titles, messages, extraction results and raw answers — each under a new
key of its own object, and deletes (audited) the extraction results of files deleted before it."""

from __future__ import annotations

import json
import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from assets import text_crypto
from compliance.events import EventType
from compliance.models import AuditEntry
from departments.tenancy import all_departments
from inference.models import Conversation, ConversationMessage, Extraction

BEFORE = [("assets", "0002_upload_references"), ("inference", "0003_extractions_and_batches")]

pytestmark = pytest.mark.django_db(transaction=True)


def _executor() -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    return executor


def _raw(table: str, column: str, pk) -> str | None:
    if isinstance(pk, uuid.UUID):  # as the backend stores a UUIDField
        pk = pk.hex if connection.vendor == "sqlite" else str(pk)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT CAST({column} AS text) FROM {table} WHERE id = %s", [pk])  # noqa: S608 - constant names
        row = cursor.fetchone()
    return row[0] if row else None


def test_the_upgrade_seals_existing_text_and_drops_results_of_deleted_files(personas, settings, tmp_path):
    settings.ASSET_MASTER_KEY_FILE = tmp_path / "asset-keys"
    executor = _executor()
    executor.migrate(BEFORE)  # an installation of the previous release
    old = executor.loader.project_state(BEFORE).apps
    Asset = old.get_model("assets", "Asset")
    OldConversation = old.get_model("inference", "Conversation")
    OldMessage = old.get_model("inference", "ConversationMessage")
    OldExtraction = old.get_model("inference", "Extraction")
    department = personas.department_a.pk
    asset = Asset._base_manager.create(
        department_id=department,
        storage_name=uuid.uuid4().hex,
        original_name="2025年3月 发票 invoice-LEGACYNAME.pdf",
        size=10,
        content_type="application/pdf",
        sha256="a" * 64,
        classification=1,
        key_id="k",
        wrapped_key=b"\0" * 60,
    )
    conversation = OldConversation._base_manager.create(
        department_id=department, owner_id=personas.member.pk, title="LEGACYTITLE 报销"
    )
    messages = [
        OldMessage._base_manager.create(
            department_id=department, conversation=conversation, role=role, content=f"LEGACY{role} 内容"
        )
        for role in ("user", "assistant")
    ]
    result = {"seller_name": "LEGACYSELLER 上海", "total_amount": 12800.0}
    kept = OldExtraction._base_manager.create(
        department_id=department,
        template_slug="vat-invoice",
        asset=asset,
        asset_ref=str(asset.pk),
        asset_sha256=asset.sha256,
        status="valid",
        result=result,
        rule_outcomes=[{"field": "total_amount", "actual": 12800.0, "triggered": True}],
        flags=["second_approver"],
        raw_answer=json.dumps(result, ensure_ascii=False),
    )
    orphan = OldExtraction._base_manager.create(  # its file was deleted under the old release
        department_id=department,
        template_slug="vat-invoice",
        asset=None,
        asset_ref=str(uuid.uuid4()),
        asset_sha256="b" * 64,
        status="valid",
        result={"seller_name": "LEGACYORPHAN"},
        raw_answer="LEGACYORPHAN",
    )
    never_a_file = OldExtraction._base_manager.create(  # a batch entry for an id that never existed
        department_id=department,
        template_slug="vat-invoice",
        asset=None,
        asset_ref="no-such-id",
        status="failed",
        problems=["no such file in this department"],
    )
    assert "LEGACYTITLE" in _raw("inference_conversation", "title", conversation.pk)

    executor = _executor()
    executor.migrate(executor.loader.graph.leaf_nodes())  # the upgrade

    columns = [
        ("assets_asset", "original_name", asset.pk),
        ("inference_conversation", "title", conversation.pk),
        *[("inference_conversationmessage", "content", message.pk) for message in messages],
        *[("inference_extraction", field, kept.pk) for field in ("result", "rule_outcomes", "flags", "raw_answer")],
    ]
    for table, column, pk in columns:
        stored = _raw(table, column, pk)
        assert stored.startswith(text_crypto.SEAL_PREFIX) and "LEGACY" not in stored and "上海" not in stored, (
            table,
            column,
        )
    with all_departments(reason="test reads the upgraded rows"):
        from assets.models import Asset as CurrentAsset

        assert CurrentAsset.objects.get(pk=asset.pk).original_name == "2025年3月 发票 invoice-LEGACYNAME.pdf"
        upgraded = Conversation.objects.get(pk=conversation.pk)
        assert upgraded.title == "LEGACYTITLE 报销"
        assert [m.content for m in upgraded.messages.order_by("pk")] == ["LEGACYuser 内容", "LEGACYassistant 内容"]
        assert len({m.ref for m in ConversationMessage.objects.filter(conversation=upgraded)}) == 2
        extraction = Extraction.objects.get(pk=kept.pk)
        assert extraction.result == result and extraction.flags == ["second_approver"]
        assert json.loads(extraction.raw_answer) == result
        assert extraction.rule_outcomes[0]["actual"] == 12800.0 and extraction.problems == []
        # Each object has a key of its own.
        assert len({bytes(upgraded.text_key), bytes(extraction.text_key)}) == 2
        assert not Extraction.objects.filter(pk=orphan.pk).exists()
        assert Extraction.objects.get(pk=never_a_file.pk).problems == ["no such file in this department"]
    entry = AuditEntry.objects.filter(event_type=EventType.RETENTION_PURGE, object_type="inference.extraction").get()
    assert entry.details["extractions"] == [str(orphan.pk)] and entry.actor_name == "system"
