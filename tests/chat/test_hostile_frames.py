"""Hostile frames on the chat websocket (IP-2): each answers an error frame and the socket
stays open — deep nesting, lone surrogates, NaN. The real consumer through Channels'
WebsocketCommunicator, the real login and session, on the in-memory layer and on Redis."""

from __future__ import annotations

import pytest

from config.strict_json import JSON_LONE_SURROGATE, JSON_TOO_DEEP
from tests.chat.conftest import SHORT_TURN, frame, open_chat, receive, receive_until

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE_FRAMES = {
    # Deep enough to exhaust the interpreter's recursion limit (json raises RecursionError), and
    # still well under the 32 KiB frame limit.
    "nested arrays": ("[" * 10_000 + "]" * 10_000, JSON_TOO_DEEP),
    "nested objects": ('{"v": 1, "type": "ping", "x": ' + '{"a": ' * 3000 + "1" + "}" * 3000 + "}", JSON_TOO_DEEP),
    "nested, under the recursion limit": (
        '{"v": 1, "type": "ping", "x": ' + "[" * 500 + "]" * 500 + "}",
        JSON_TOO_DEEP,
    ),
    "lone surrogate in the text": ('{"v": 1, "type": "turn.start", "text": "hi \\ud800 there"}', JSON_LONE_SURROGATE),
    "lone low surrogate in a key": ('{"v": 1, "type": "ping", "\\udfff": 1}', JSON_LONE_SURROGATE),
    "lone surrogate in the ref": ('{"v": 1, "type": "turn.start", "text": "x", "ref": "\\udbff"}', JSON_LONE_SURROGATE),
}


@pytest.mark.parametrize(("raw", "message"), list(HOSTILE_FRAMES.values()), ids=list(HOSTILE_FRAMES))
async def test_a_hostile_frame_answers_an_error_frame_and_the_socket_stays_open(
    personas, chat_engine, chat_layer, raw, message
):
    chat = await open_chat("bob")
    await chat.send_to(text_data=raw)
    error = await receive(chat)
    assert (error["type"], error["code"], error["message"], error["fatal"]) == ("error", "bad_frame", message, False)
    # The same socket still carries a whole turn.
    await chat.send_to(text_data=frame("turn.start", ref="after", text="still here?", params=SHORT_TURN))
    _, done = await receive_until(chat, {"done", "error"})
    assert done["type"] == "done", done
    await chat.send_to(text_data=frame("ping"))
    assert (await receive(chat))["type"] == "pong"
    await chat.disconnect()


async def test_a_non_finite_number_is_refused_like_any_bad_frame(personas, chat_engine):
    chat = await open_chat("bob")
    await chat.send_to(text_data='{"v": 1, "type": "turn.start", "text": "x", "params": {"temperature": NaN}}')
    error = await receive(chat)
    assert (error["type"], error["code"]) == ("error", "bad_frame") and "NaN" in error["message"]
    await chat.send_to(text_data=frame("ping"))
    assert (await receive(chat))["type"] == "pong"
    await chat.disconnect()


async def test_a_hundred_thousand_brackets_are_refused_by_size_and_the_socket_stays_open(personas, chat_engine):
    """The REST API's 100000-deep body, as a frame: over the frame limit, refused before parsing."""
    from inference.chat.protocol import FRAME_TOO_LARGE

    chat = await open_chat("bob")
    await chat.send_to(text_data="[" * 100_000 + "]" * 100_000)
    error = await receive(chat)
    assert (error["type"], error["code"], error["message"], error["fatal"]) == (
        "error",
        "too_large",
        FRAME_TOO_LARGE,
        False,
    )
    await chat.send_to(text_data=frame("ping"))
    assert (await receive(chat))["type"] == "pong"
    await chat.disconnect()
