"""An earlier turn whose answer is empty (stopped before its first token, or the model ended at
once) does not break the conversation: the next turn sends its question and is answered."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from departments.tenancy import department_scope
from inference.chat.models import Conversation, ConversationMessage, MessageRole, MessageStatus
from tests.chat.conftest import SHORT_TURN, frame, open_chat, receive_until

pytestmark = pytest.mark.django_db(transaction=True)


@sync_to_async
def conversation_with_an_empty_answer(personas) -> Conversation:
    department = personas.department_a
    with department_scope(department):
        conversation = Conversation.objects.create(department=department, owner=personas.member, title="empty")
        for role, content, status in (
            (MessageRole.USER, "first question", MessageStatus.COMPLETE),
            (MessageRole.ASSISTANT, "", MessageStatus.STOPPED),
        ):
            ConversationMessage.objects.create(
                department=department, conversation=conversation, role=role, content=content, status=status
            )
        return conversation


async def test_a_turn_after_an_empty_answer_is_answered(personas, chat_engine, chat_layer):
    conversation = await conversation_with_an_empty_answer(personas)
    chat = await open_chat("bob")
    await chat.send_to(
        text_data=frame("turn.start", text="second question", conversation=conversation.pk, params=SHORT_TURN)
    )
    _frames, done = await receive_until(chat, {"done", "error"})
    assert done["type"] == "done", done
    await chat.disconnect()
