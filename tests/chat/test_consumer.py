"""The chat consumer with Channels' WebsocketCommunicator, a real engine (tiny demo model), the
real login view and session, on the in-memory layer and on a real Redis."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from accounts.sessions import SESSION_LAST_SEEN_KEY
from accounts.websocket import CLOSE_SESSION_ENDED
from compliance.events import EventType, Outcome
from compliance.models import AuditEntry
from compliance.preview_crypto import entry_previews_open
from departments.tenancy import all_departments
from inference.chat import protocol
from inference.chat.consumer import CLOSE_ACCESS_REVOKED, ChatConsumer
from inference.models import Conversation, ConversationMessage, MessageStatus
from tests.chat.conftest import (
    LONG_TURN,
    SHORT_TURN,
    communicator,
    frame,
    open_chat,
    receive,
    receive_until,
    session_cookie,
    sign_in,
)
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.django_db(transaction=True)


def entries(event_type, **filters):
    return list(AuditEntry.objects.filter(event_type=event_type, **filters).order_by("sequence"))


def stored_messages(conversation_id):
    with all_departments(reason="test inspects stored messages"):
        return list(ConversationMessage.objects.filter(conversation_id=conversation_id).order_by("created_at", "pk"))


def latest_conversation_of(username):
    with all_departments(reason="test inspects stored conversations"):
        return Conversation.objects.filter(owner__username=username).order_by("-pk").values_list("pk", flat=True)[0]


async def wait_idle(engine, seconds=15):
    def idle() -> bool:
        return not (engine.scheduler.active() or engine.scheduler.queue_depth())

    await wait_until_async(idle, timeout=seconds, message="the engine is still busy")


async def bob_in_a_long_turn():
    """bob's socket, a long turn under way: its first token has arrived."""
    chat = await open_chat("bob")
    await chat.send_to(text_data=frame("turn.start", text="talk at length", params=LONG_TURN))
    await receive_until(chat, {"token"})
    return chat


async def still_answers_then_disconnect(chat) -> None:
    await chat.send_to(text_data=frame("ping"))
    assert (await receive(chat))["type"] == "pong"
    await chat.disconnect()


# --- connecting -------------------------------------------------------------------------------------


async def test_anonymous_is_refused(personas, chat_layer):
    chat = communicator(None)
    connected, _ = await chat.connect(timeout=5)
    assert not connected


async def test_outsider_is_refused_and_the_denial_is_audited(personas, chat_engine):
    client = await sync_to_async(sign_in)("charlie")
    chat = communicator(session_cookie(client), "finance")
    connected, _ = await chat.connect(timeout=5)
    assert not connected
    denial = (await sync_to_async(entries)(EventType.ACCESS_DENIED, actor_name="charlie"))[-1]
    assert denial.outcome == Outcome.DENIED and denial.object_repr == "finance"
    assert denial.details["reason"] == "not a member of this department"
    # ... while charlie's own department answers.
    own = communicator(session_cookie(client), "quality")
    assert (await own.connect(timeout=5))[0]
    await own.disconnect()


async def test_cross_site_origin_is_refused(personas, chat_engine):
    from config.asgi import application

    client = await sync_to_async(sign_in)("bob")
    foreign = communicator(session_cookie(client), origin="https://evil.example", app=application)
    assert not (await foreign.connect(timeout=5))[0]
    missing = communicator(session_cookie(client), origin=None, app=application)
    assert not (await missing.connect(timeout=5))[0]
    same_site = communicator(session_cookie(client), origin="http://127.0.0.1", app=application)
    assert (await same_site.connect(timeout=5))[0]
    await same_site.disconnect()


# --- a turn -----------------------------------------------------------------------------------------


async def test_a_turn_streams_tokens_and_is_stored_and_audited(personas, chat_engine, chat_layer):
    chat = await open_chat("bob")
    prompt = "Invoice for 13812345678, please summarise"
    await chat.send_to(text_data=frame("turn.start", ref="r1", text=prompt, params=SHORT_TURN))
    frames, done = await receive_until(chat, {"done", "error"})
    assert done["type"] == "done", done
    accepted = frames[0]
    assert accepted["type"] == "turn.accepted" and accepted["ref"] == "r1" and accepted["created"] is True
    assert accepted["conversation"] is None  # created with the turn's record, named in "done"
    tokens = [item["text"] for item in frames if item["type"] == "token"]
    assert tokens, frames
    assert done["status"] == MessageStatus.COMPLETE and done["finish_reason"] == "length"
    assert done["usage"]["completion_tokens"] == 4
    await chat.disconnect()

    assert done["relay"]["accept"] >= 0 and done["relay"]["first_text"] > 0
    asked, answered = await sync_to_async(stored_messages)(done["conversation"])
    assert (asked.role, asked.content) == ("user", prompt)
    assert answered.content == "".join(tokens) and answered.status == MessageStatus.COMPLETE
    assert answered.usage["completion_tokens"] == 4 and answered.usage["params"]["max_new_tokens"] == 4

    call = (await sync_to_async(entries)(EventType.INFERENCE, actor_name="bob"))[-1]
    assert call.outcome == Outcome.SUCCESS and call.department_slug == "finance"
    assert call.details["channel"] == "websocket"
    # The one prompt hash (inference.model_calls): [[role, text, [file SHA-256, ...]], ...] as JSON.
    canonical = json.dumps([["user", prompt, []]], ensure_ascii=False, separators=(",", ":"))
    assert call.details["prompt_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert call.details["model_sha256"] == chat_engine.info().manifest_sha256
    assert call.details["image_sha256"] == [] and call.details["asset_ids"] == []
    assert "13812345678" not in json.dumps(call.details, ensure_ascii=False)
    # The preview is sealed under the conversation's key; the auditor's reading opens it.
    opened = await sync_to_async(entry_previews_open)(call)
    assert call.details["prompt_preview"].startswith("mmt1:")
    assert opened.details["prompt_preview"].startswith("Invoice for 138****5678")
    assert call.details["completion_tokens"] == 4 and call.details["latency_ms"] > 0
    assert call.details["finish_reason"] == "length" and call.details["error"] == ""
    assert call.request_id == done["request_id"] and call.source_ip == "127.0.0.1"
    assert call.user_agent == "pytest-chat"
    created = await sync_to_async(entries)(EventType.CONVERSATION_CREATE, actor_name="bob")
    assert created and created[-1].object_id == str(done["conversation"])
    # The start of the stream was recorded before any token left (AU-4), in the same request.
    start = (await sync_to_async(entries)(EventType.INFERENCE_START, actor_name="bob"))[-1]
    assert start.request_id == call.request_id and start.sequence < call.sequence
    assert start.details["prompt_sha256"] == call.details["prompt_sha256"]
    assert "13812345678" not in json.dumps(start.details, ensure_ascii=False)


async def test_nothing_is_streamed_when_the_start_cannot_be_audited(personas, chat_engine, monkeypatch):
    from compliance.services import AuditWriteError

    def failing(**kwargs):
        raise AuditWriteError("the audit trail cannot be written")

    monkeypatch.setattr("inference.chat.consumer.inference_start_record", failing)
    chat = await open_chat("bob")
    await chat.send_to(text_data=frame("turn.start", ref="r1", text="hello", params=SHORT_TURN))
    answer = await receive(chat)
    assert (answer["type"], answer["code"], answer["ref"]) == ("error", protocol.CODE_INTERNAL, "r1")
    assert await chat.receive_nothing(timeout=0.5)  # no turn.accepted, no token
    assert not await sync_to_async(entries)(EventType.INFERENCE, actor_name="bob")
    await chat.disconnect()


async def test_an_image_turn_and_a_follow_up_carry_the_history(personas, chat_engine, upload_png):
    asset = await sync_to_async(upload_png)()
    chat = await open_chat("bob")
    await chat.send_to(text_data=frame("turn.start", text="What colour?", assets=[str(asset.pk)], params=SHORT_TURN))
    frames, first = await receive_until(chat, {"done", "error"})
    assert first["type"] == "done", first
    conversation = first["conversation"]
    await chat.send_to(text_data=frame("turn.start", conversation=conversation, text="And again?", params=SHORT_TURN))
    frames, second = await receive_until(chat, {"done", "error"})
    assert second["type"] == "done" and frames[0]["created"] is False
    # The second prompt holds the first question with its image and the first answer.
    assert second["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"]
    await chat.disconnect()
    messages = await sync_to_async(stored_messages)(conversation)
    assert len(messages) == 4
    with all_departments(reason="test"):
        assert await sync_to_async(lambda: [str(a.pk) for a in messages[0].assets.all()])() == [str(asset.pk)]


async def test_another_departments_file_is_not_found_and_audited(personas, chat_engine, upload_png):
    foreign = await sync_to_async(upload_png)(user=personas.outsider, department=personas.department_b)
    chat = await open_chat("bob")
    await chat.send_to(text_data=frame("turn.start", text="look", assets=[str(foreign.pk)]))
    error = await receive(chat)
    assert (error["type"], error["code"], error["message"]) == ("error", "not_found", protocol.FILE_NOT_FOUND)
    denial = (await sync_to_async(entries)(EventType.ACCESS_DENIED, actor_name="bob"))[-1]
    assert denial.object_id == str(foreign.pk) and denial.details["purpose"] == "chat"

    def conversations_of_bob():
        with all_departments(reason="test"):
            return Conversation.objects.filter(owner=personas.member).count()

    assert await sync_to_async(conversations_of_bob)() == 0  # a refused turn leaves no empty conversation
    await still_answers_then_disconnect(chat)


async def test_someone_elses_conversation_is_not_found(personas, chat_engine):
    bob = await open_chat("bob")
    await bob.send_to(text_data=frame("turn.start", text="mine", params=SHORT_TURN))
    _, done = await receive_until(bob, {"done"})
    await bob.disconnect()
    alice = await open_chat("alice")
    await alice.send_to(text_data=frame("turn.start", conversation=done["conversation"], text="peek"))
    error = await receive(alice)
    assert error["code"] == "not_found"
    assert (await sync_to_async(entries)(EventType.ACCESS_DENIED, actor_name="alice"))[-1].details["purpose"] == "chat"
    await alice.disconnect()


# --- protocol ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "code", "message"),
    [
        ("not json", "bad_frame", protocol.FRAME_NOT_JSON),
        ("[1, 2]", "bad_frame", protocol.FRAME_NOT_OBJECT),
        ('{"v": 2, "type": "ping"}', "unsupported_version", protocol.VERSION_UNSUPPORTED),
        ('{"type": "ping"}', "unsupported_version", protocol.VERSION_UNSUPPORTED),
        ('{"v": 1, "type": "explode"}', "bad_frame", protocol.TYPE_UNKNOWN.format(type="explode")),
        ('{"v": 1, "type": "turn.start", "text": 5}', "bad_frame", None),
        ('{"v": 1, "type": "turn.start", "text": " "}', "bad_frame", protocol.TEXT_REQUIRED),
        ('{"v": 1, "type": "turn.start", "text": "x", "assets": ["../etc"]}', "bad_frame", None),
        ('{"v": 1, "type": "turn.start", "text": "x", "params": {"temperature": 9}}', "bad_frame", None),
        ('{"v": 1, "type": "turn.start", "text": "x", "params": {"max_new_tokens": 0}}', "bad_frame", None),
        ('{"v": 1, "type": "turn.start", "text": "x", "params": {"top_k": 3}}', "bad_frame", None),
        ('{"v": 1, "type": "turn.start", "text": "x", "conversation": "1"}', "bad_frame", None),
        ('{"v": 1, "type": "turn.start", "text": "' + "x" * 40000 + '"}', "too_large", protocol.FRAME_TOO_LARGE),
        ('{"v": 1, "type": "turn.stop"}', "no_turn", protocol.NO_TURN_RUNNING),
    ],
)
async def test_malformed_frames_answer_errors_and_the_socket_stays_usable(personas, chat_engine, raw, code, message):
    chat = await open_chat("bob")
    await chat.send_to(text_data=raw)
    error = await receive(chat)
    assert error["type"] == "error" and error["code"] == code and error["fatal"] is False
    if message:
        assert error["message"] == message
    await chat.send_to(bytes_data=b"\x00\x01")
    assert (await receive(chat))["message"] == protocol.FRAME_BINARY
    await still_answers_then_disconnect(chat)


# --- stop, disconnect, one turn at a time ----------------------------------------------------------


async def test_stop_cancels_generation_and_stores_the_partial_turn(personas, chat_engine, chat_layer):
    chat = await bob_in_a_long_turn()
    await chat.send_to(text_data=frame("turn.start", text="a second one"))
    busy = await receive_until(chat, {"error"})
    assert busy[1]["code"] == "turn_in_progress"
    await chat.send_to(text_data=frame("turn.stop"))
    frames, done = await receive_until(chat, {"done"}, timeout=30)
    assert done["status"] == MessageStatus.STOPPED and done["finish_reason"] == "cancelled"
    assert done["usage"]["completion_tokens"] < LONG_TURN["max_new_tokens"]
    await wait_idle(chat_engine)
    _, answered = await sync_to_async(stored_messages)(done["conversation"])
    assert answered.status == MessageStatus.STOPPED and answered.usage["params"]["stopped_by"] == "stop"
    assert answered.content  # the partial answer is kept
    call = (await sync_to_async(entries)(EventType.INFERENCE, actor_name="bob"))[-1]
    assert call.details["finish_reason"] == "cancelled" and call.outcome == Outcome.SUCCESS
    assert call.details["stopped_by"] == "stop"
    await chat.disconnect()


async def test_a_vanished_client_cancels_generation_and_the_partial_turn_is_stored(personas, chat_engine):
    chat = await bob_in_a_long_turn()
    await chat.disconnect()
    await wait_idle(chat_engine)
    asked, answered = await sync_to_async(stored_messages)(await sync_to_async(latest_conversation_of)("bob"))
    assert answered.status == MessageStatus.STOPPED and answered.usage["params"]["stopped_by"] == "disconnect"
    assert answered.usage["completion_tokens"] < LONG_TURN["max_new_tokens"]


async def test_the_rate_limit_answers_a_clear_error_and_is_audited(personas, chat_engine, settings):
    settings.CHAT_TURNS_PER_MINUTE = 2
    chat = await open_chat("bob")
    for _ in range(2):
        await chat.send_to(text_data=frame("turn.start", text="hi", params=SHORT_TURN))
        assert (await receive_until(chat, {"done", "error"}))[1]["type"] == "done"
    await chat.send_to(text_data=frame("turn.start", ref="third", text="hi", params=SHORT_TURN))
    error = await receive(chat)
    assert error["code"] == "rate_limited" and error["ref"] == "third" and 1 <= error["retry_after"] <= 60
    assert error["message"] == protocol.RATE_LIMITED.format(limit=2, retry_after=error["retry_after"])
    refusal = (await sync_to_async(entries)(EventType.INFERENCE, actor_name="bob"))[-1]
    assert refusal.outcome == Outcome.DENIED and refusal.details["error"] == "rate_limited"
    assert refusal.details["attempts"] == 0 and refusal.details["channel"] == "websocket"
    # The budget is the person's, not the socket's: a second socket is limited too.
    other = await open_chat("bob")
    await other.send_to(text_data=frame("turn.start", text="hi", params=SHORT_TURN))
    assert (await receive(other))["code"] == "rate_limited"
    await other.disconnect()
    await still_answers_then_disconnect(chat)


# --- access changes while connected ------------------------------------------------------------------


async def test_removal_from_the_department_closes_the_socket_at_once(personas, chat_engine, chat_layer):
    from departments.models import Membership
    from departments.services import membership_remove

    chat = await bob_in_a_long_turn()

    def remove():
        membership_remove(
            membership=Membership.objects.get(user=personas.member, department=personas.department_a),
            acting_user="system",
        )

    await sync_to_async(remove)()
    while True:  # tokens may still be in flight before the close
        output = await chat.receive_output(timeout=10)
        if output["type"] == "websocket.close":
            break
    assert output["code"] in (CLOSE_SESSION_ENDED, CLOSE_ACCESS_REVOKED)
    await chat.disconnect(timeout=10)  # what the server sends once the socket is closed
    await wait_idle(chat_engine)
    _, answered = await sync_to_async(stored_messages)(await sync_to_async(latest_conversation_of)("bob"))
    assert answered.status == MessageStatus.STOPPED


async def test_membership_is_rechecked_on_every_message(personas, chat_engine):
    chat = await open_chat("bob")

    def remove_behind_the_platforms_back():
        # Raw SQL: no signal, no session termination; only the per-message check can notice.
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM departments_membership WHERE user_id = %s AND department_id = %s",
                [personas.member.pk, personas.department_a.pk],
            )

    await sync_to_async(remove_behind_the_platforms_back)()
    await chat.send_to(text_data=frame("ping"))
    assert await chat.receive_output(timeout=5) == {"type": "websocket.close", "code": CLOSE_ACCESS_REVOKED}


async def test_a_demoted_administrator_is_disconnected(personas, chat_engine):
    chat = await open_chat("alice")

    def demote_quietly():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE departments_membership SET role = 'member' WHERE user_id = %s", [personas.admin.pk])

    await sync_to_async(demote_quietly)()
    await chat.send_to(text_data=frame("ping"))
    assert (await chat.receive_output(timeout=5))["code"] == CLOSE_ACCESS_REVOKED


async def test_a_disabled_user_is_disconnected_at_once(personas, chat_engine, chat_layer):
    from accounts.services import user_disable

    chat = await open_chat("bob")
    await sync_to_async(user_disable)(user=personas.member, reason="left", acting_user="system")
    assert (await chat.receive_output(timeout=5))["code"] == CLOSE_SESSION_ENDED


async def test_logout_closes_the_chat(personas, chat_engine, chat_layer):
    chat = await open_chat("bob")
    await sync_to_async(chat.http_client.post)("/accounts/logout/")
    assert (await chat.receive_output(timeout=5))["code"] == CLOSE_SESSION_ENDED


async def test_a_quiet_socket_closes_when_the_session_goes_idle(personas, chat_engine, monkeypatch, settings):
    monkeypatch.setattr(ChatConsumer, "watchdog_seconds", 0.2)
    chat = await open_chat("bob")

    def age():
        session = chat.http_client.session
        session[SESSION_LAST_SEEN_KEY] = time.time() - settings.SESSION_IDLE_SECONDS - 5
        session.save()

    await sync_to_async(age)()
    # No frame is sent: the watchdog alone notices the idle session.
    assert await chat.receive_output(timeout=5) == {"type": "websocket.close", "code": CLOSE_SESSION_ENDED}


async def test_pings_and_stop_frames_do_not_keep_the_session_alive(personas, chat_engine, settings):
    chat = await open_chat("bob")

    def seen_ago():
        return time.time() - chat.http_client.session[SESSION_LAST_SEEN_KEY]

    def age(seconds):
        session = chat.http_client.session
        session[SESSION_LAST_SEEN_KEY] = time.time() - seconds
        session.save()

    await sync_to_async(age)(settings.SESSION_IDLE_SECONDS - 30)  # close to idle, not yet
    await chat.send_to(text_data=frame("ping"))
    assert (await receive(chat))["type"] == "pong"
    await chat.send_to(text_data=frame("turn.stop"))
    assert (await receive(chat))["code"] == protocol.CODE_NO_TURN
    await chat.send_to(text_data="not a frame")
    assert (await receive(chat))["type"] == "error"
    assert await sync_to_async(seen_ago)() >= settings.SESSION_IDLE_SECONDS - 30  # none of them counted

    # Sending a turn is what a person does: it keeps the session alive.
    await chat.send_to(text_data=frame("turn.start", text="still here", params=SHORT_TURN))
    await receive_until(chat, {"done"})
    assert await sync_to_async(seen_ago)() < 5
    await chat.disconnect()


async def test_a_pinged_socket_closes_when_the_session_goes_idle(personas, chat_engine, monkeypatch, settings):
    monkeypatch.setattr(ChatConsumer, "watchdog_seconds", 0.2)
    chat = await open_chat("bob")

    def age():
        session = chat.http_client.session
        session[SESSION_LAST_SEEN_KEY] = time.time() - settings.SESSION_IDLE_SECONDS + 1
        session.save()

    await sync_to_async(age)()  # one second of idle time left

    async def pinged_until_closed():
        await chat.send_to(text_data=frame("ping"))
        answer = await chat.receive_output(timeout=5)
        return answer if answer["type"] == "websocket.close" else None

    # A keep-alive every 0.2 s does not keep the session: the socket closes as it goes idle.
    closed = await wait_until_async(pinged_until_closed, timeout=10, interval=0.2)
    assert closed == {"type": "websocket.close", "code": CLOSE_SESSION_ENDED}


async def test_conversations_are_department_scoped(personas, chat_engine):
    chat = await open_chat("charlie", "quality")
    await chat.send_to(text_data=frame("turn.start", text="quality question", params=SHORT_TURN))
    frames, done = await receive_until(chat, {"done"})
    await chat.disconnect()

    def departments_of_conversation():
        with all_departments(reason="test"):
            return Conversation.objects.get(pk=done["conversation"]).department.slug

    assert await sync_to_async(departments_of_conversation)() == "quality"
