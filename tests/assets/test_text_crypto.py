"""Sealed business text (assets.text_crypto): values are bound to their row, field and owner;
plaintext cannot be written or searched in SQL by accident; keys are unwrapped once per owner
instance and never pickled."""

from __future__ import annotations

import pickle

import pytest
from django.core.exceptions import FieldError
from django.db import connection, transaction

from assets import keyring, text_crypto
from assets.models import Asset
from departments.tenancy import department_scope
from inference.chat.selectors import conversation_messages
from inference.models import Conversation, ConversationMessage, Extraction
from tests.assets import samples

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(personas):
    with department_scope(personas.department_a):
        conversation = Conversation.objects.create(
            department=personas.department_a, owner=personas.member, title="预算 budget"
        )
        for index in range(6):
            ConversationMessage.objects.create(
                department=personas.department_a,
                conversation=conversation,
                role="user" if index % 2 == 0 else "assistant",
                content=f"message {index}: 合同金额 {index * 1000}",
            )
    return conversation


def _column(table: str, column: str, pk) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])  # noqa: S608 - names are constants
        return cursor.fetchone()[0]


def test_the_database_holds_ciphertext_and_the_model_reads_plaintext(personas, conversation):
    with department_scope(personas.department_a):
        first = conversation.messages.order_by("pk").first()
    stored = _column("inference_conversationmessage", "content", first.pk)
    assert stored.startswith(text_crypto.SEAL_PREFIX) and "合同" not in stored and "message" not in stored
    assert _column("inference_conversation", "title", conversation.pk).startswith(text_crypto.SEAL_PREFIX)
    with department_scope(personas.department_a):
        fresh = Conversation.objects.get(pk=conversation.pk)
        assert fresh.title == "预算 budget"
        assert [m.content for m in conversation_messages(conversation=fresh)][0] == "message 0: 合同金额 0"
        # Saving a row whose text was not read writes its ciphertext back untouched; once read,
        # the text is sealed afresh: the same text, another ciphertext (a fresh nonce).
        first.save()
        assert _column("inference_conversationmessage", "content", first.pk) == stored
        assert first.content == "message 0: 合同金额 0"
        first.save()
    assert _column("inference_conversationmessage", "content", first.pk) != stored


def test_a_value_moved_to_another_row_field_or_object_does_not_open(personas, conversation, make_user):
    with department_scope(personas.department_a):
        first, second, third = list(conversation.messages.order_by("pk"))[:3]  # user, assistant, user
        other = Conversation.objects.create(department=personas.department_a, owner=personas.member, title="x")
        sealed_first = ConversationMessage.objects.filter(pk=first.pk).values_list("content", flat=True)[0]
        sealed_title = Conversation.objects.filter(pk=conversation.pk).values_list("title", flat=True)[0]
        # Another message of the same conversation, same role: its own reference binds it.
        ConversationMessage.objects.filter(pk=third.pk).update(content=sealed_first)
        # The conversation's title as a message's content: another field.
        ConversationMessage.objects.filter(pk=second.pk).update(content=sealed_title)
        # The title onto another conversation: another key.
        Conversation.objects.filter(pk=other.pk).update(title=sealed_title)
        for message_pk in (third.pk, second.pk):
            with pytest.raises(text_crypto.TextSealError):
                _ = ConversationMessage.objects.get(pk=message_pk).content
        with pytest.raises(text_crypto.TextSealError):
            _ = Conversation.objects.get(pk=other.pk).title
        assert ConversationMessage.objects.get(pk=first.pk).content == "message 0: 合同金额 0"
        # A wrapped key copied onto another kind of row does not unwrap.
        extraction = Extraction.objects.create(
            department=personas.department_a, template_slug="t", asset_ref="x", status="failed", problems=["p"]
        )
        key = Conversation.objects.filter(pk=conversation.pk).values_list("text_key_id", "text_key")[0]
        Extraction.objects.filter(pk=extraction.pk).update(text_key_id=key[0], text_key=key[1])
        with pytest.raises(keyring.KeyRingError):
            _ = Extraction.objects.get(pk=extraction.pk).problems


def test_sql_cannot_write_or_search_plaintext_by_accident(personas, conversation, upload):
    with department_scope(personas.department_a):
        with pytest.raises(ValueError, match="encrypted at rest"), transaction.atomic():
            ConversationMessage.objects.filter(conversation=conversation).update(content="in clear")
        with pytest.raises(FieldError, match="encrypted at rest"):
            list(ConversationMessage.objects.filter(content__contains="合同"))
        with pytest.raises(FieldError, match="encrypted at rest"):
            list(Conversation.objects.filter(title="预算 budget"))
        # The one search that exists (file names, REST API ?name=) decrypts the scope's rows.
        wanted = upload(samples.image_bytes("PNG", (20, 20)), "Rechnung-März.png")
        upload(samples.image_bytes("PNG", (21, 21)), "photo.png")
        assert list(Asset.objects.filter(original_name__icontains="rechnung-mä")) == [wanted]
        assert list(Asset.objects.filter(original_name__icontains="nothing")) == []
        # A bulk insert bypasses save(), which makes an object's key: it fails, never stores
        # ciphertext under a key that is not stored with it.
        with pytest.raises(text_crypto.TextSealError, match="no text key"), transaction.atomic():
            Conversation.objects.bulk_create(
                [Conversation(department=personas.department_a, owner=personas.member, title="bulk")]
            )


def test_a_conversation_key_is_unwrapped_once_for_all_its_messages(personas, conversation, monkeypatch):
    calls = []
    real_open = text_crypto.text_key_open
    monkeypatch.setattr(text_crypto, "text_key_open", lambda *args: calls.append(args[0]) or real_open(*args))
    with department_scope(personas.department_a):
        fresh = Conversation.objects.get(pk=conversation.pk)
        contents = [message.content for message in conversation_messages(conversation=fresh)]
        assert len(contents) == 6 and fresh.title == "预算 budget"
    assert calls == ["inference.conversation"]
    # The key lives on that instance only: a row pickled (e.g. into a cache) never carries it.
    assert "_text_cipher" in fresh.__dict__ and "_text_cipher" not in pickle.loads(pickle.dumps(fresh)).__dict__  # noqa: S301
