"""A task template chosen in the chat: the chip fills in the instruction, and the turn
names the template; the model gets the text with the template's JSON schema, while the
conversation stores and shows what the person sent. An unknown template is refused."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from departments.tenancy import department_scope
from inference.chat.models import ConversationMessage, MessageRole
from inference.chat.services import SCHEMA_INSTRUCTION
from inference.extraction.services import BUILTIN_TEMPLATES, templates_builtin_ensure
from tests.chat.conftest import SHORT_TURN, frame, open_chat, receive, receive_until

pytestmark = pytest.mark.django_db(transaction=True)


@sync_to_async
def builtin_templates(personas) -> None:
    templates_builtin_ensure(department=personas.department_a)


@sync_to_async
def stored_question(personas, message_id: int) -> str:
    with department_scope(personas.department_a):
        message = ConversationMessage.objects.get(pk=message_id)
        assert message.role == MessageRole.USER
        return message.content


@sync_to_async
def last_refusal():
    from compliance.events import EventType
    from compliance.models import AuditEntry

    return AuditEntry.objects.filter(event_type=EventType.INFERENCE).latest("sequence")


def spy_on_submissions(engine, monkeypatch) -> list:
    seen = []
    submit = engine.submit

    def recording(messages, **kwargs):
        seen.append(messages)
        return submit(messages, **kwargs)

    monkeypatch.setattr(engine, "submit", recording)
    return seen


async def test_a_template_turn_sends_the_schema_to_the_model_and_stores_the_text(
    personas, chat_engine, chat_layer, monkeypatch
):
    await builtin_templates(personas)
    seen = spy_on_submissions(chat_engine, monkeypatch)
    chat = await open_chat("bob")
    text = "Read this invoice, please."
    await chat.send_to(text_data=frame("turn.start", text=text, template="vat-invoice", params=SHORT_TURN))
    _frames, done = await receive_until(chat, {"done", "error"})
    assert done["type"] == "done", done
    (messages,) = seen
    asked = messages[-1].text
    assert asked.startswith(text + "\n\n" + SCHEMA_INSTRUCTION)
    for field in BUILTIN_TEMPLATES["vat-invoice"]["json_schema"]["properties"]:
        assert f'"{field}"' in asked, field
    assert await stored_question(personas, done["message_ids"][0]) == text  # what the person sent

    await chat.send_to(text_data=frame("turn.start", ref="x", text=text, template="no-such", params=SHORT_TURN))
    error = await receive(chat)
    assert (error["type"], error["code"], error["ref"]) == ("error", "not_found", "x")
    refusal = await last_refusal()
    assert refusal.details["error"] == "template_not_found" and refusal.details["attempts"] == 0
    await chat.send_to(text_data=frame("turn.start", ref="y", text=text, template=["bad"], params=SHORT_TURN))
    error = await receive(chat)
    assert (error["type"], error["code"]) == ("error", "bad_frame") and "template" in error["message"]
    assert len(seen) == 1  # neither refusal reached the model
    await chat.disconnect()
