"""The chat uses only a model the department's administrator enabled: switched off,
a turn answers a ``model_not_enabled`` error frame (recorded, the socket stays open); enabled,
the stored answer records the model version (manifest SHA-256) that produced it, and the
conversation shows it (the ``done`` frame's footer, and the stored answer's after a reload)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from compliance.context import RequestContext, request_context
from compliance.events import EventType
from compliance.models import AuditEntry
from departments.tenancy import department_scope
from inference.chat.models import ConversationMessage, MessageRole
from inference.registry.services import department_model_access_set, model_installation_record
from tests.chat.conftest import SHORT_TURN, frame, open_chat, receive, receive_until

pytestmark = pytest.mark.django_db(transaction=True)


@sync_to_async
def install(engine):
    info = engine.info()
    with request_context(RequestContext(request_id="test-install")):
        return model_installation_record(
            manifest_sha256=info.manifest_sha256, name=info.name, path="/srv/models/demo", family="qwen2_5_vl"
        )


@sync_to_async
def switch(personas, version, enabled: bool) -> None:
    with request_context(RequestContext(request_id="test-switch")):
        department_model_access_set(
            department=personas.department_a, version=version, enabled=enabled, acting_user=personas.admin
        )


@sync_to_async
def last_denial() -> AuditEntry:
    return AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).latest("sequence")


@sync_to_async
def answer_version(personas, message_id: int) -> str | None:
    with department_scope(personas.department_a):
        answer = ConversationMessage.objects.get(pk=message_id)
        assert answer.role == MessageRole.ASSISTANT
        return answer.model_sha256


async def test_a_turn_needs_the_model_enabled_and_its_answer_records_the_version(personas, chat_engine, chat_layer):
    version = await install(chat_engine)
    await switch(personas, version, enabled=False)
    chat = await open_chat("bob")
    # The hello frame names no model the department may not use.
    assert (chat.hello["model"], chat.hello["models"]) == (None, [])
    await chat.send_to(text_data=frame("turn.start", ref="off", text="hello", params=SHORT_TURN))
    error = await receive(chat)
    assert (error["type"], error["code"], error["fatal"], error["ref"]) == ("error", "model_not_enabled", False, "off")
    denial = await last_denial()
    assert denial.details["action"] == "department.chat" and denial.object_id == version.manifest_sha256

    await switch(personas, version, enabled=True)
    await chat.send_to(text_data=frame("turn.start", ref="on", text="hello", params=SHORT_TURN))
    _frames, done = await receive_until(chat, {"done", "error"})
    assert done["type"] == "done", done
    assert done["model_sha256"] == version.manifest_sha256  # the live footer names it
    assert await answer_version(personas, done["message_ids"][1]) == version.manifest_sha256
    again = await open_chat("bob")
    assert again.hello["model"]["manifest_sha256"] == version.manifest_sha256
    assert [model["name"] for model in again.hello["models"]] == [version.name]
    await again.disconnect()
    # After a reload the stored answer's footer names the version too, in either language.
    short = version.manifest_sha256[:12]
    for language, label in (("en", f"model version {short}"), ("zh-hans", f"模型版本 {short}")):
        page = await sync_to_async(chat.http_client.get)(
            f"/d/finance/?c={done['conversation']}", HTTP_ACCEPT_LANGUAGE=language
        )
        assert page.status_code == 200 and label in page.content.decode(), language
    await chat.disconnect()
