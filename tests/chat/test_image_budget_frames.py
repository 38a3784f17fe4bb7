"""The image budget on the chat websocket (IP-2): a turn whose files exceed the pixel
budget (from their stored sizes), that finds no free decode slot, or whose file fails to decode
when used, answers an error frame — ``too_many_pixels``, ``busy`` (+ retry_after),
``unreadable_file`` — and the socket stays open for the next turn (never closed with 1011).

The real consumer through Channels' WebsocketCommunicator, the real login, the demo engine,
PostgreSQL under ``make test``; "nothing decoded" is shown by ``DecodeSpy``, not by timing."""

from __future__ import annotations

from functools import partial

import pytest
from asgiref.sync import sync_to_async

from assets.models import Asset
from compliance.events import EventType
from compliance.models import AuditEntry
from departments.tenancy import all_departments
from inference.image_budget import TOO_MANY_PIXELS
from tests.assets import damaged_samples
from tests.assets.decode_slots import DecodeSpy, slots_taken, stored_for_member
from tests.chat.conftest import SHORT_TURN, frame, open_chat, receive, receive_until

pytestmark = pytest.mark.django_db(transaction=True)

# A 40-megapixel image (the upload limit's default): six of them are 240 MP, over the 200 MP budget.
HUGE_PNG = damaged_samples.png_declaring(8000, 5000)


@pytest.fixture
def store(personas, system_context):
    return sync_to_async(partial(stored_for_member, personas))


@sync_to_async
def refusals_recorded() -> list[tuple[str, str, int]]:
    """The turns refused before the model, as audited: (error, outcome, attempts)."""
    return [
        (entry.details["error"], entry.outcome, entry.details["attempts"])
        for entry in AuditEntry.objects.filter(event_type=EventType.INFERENCE).order_by("sequence")
        if entry.details.get("attempts") == 0
    ]


async def _still_open(chat) -> None:
    """The socket answers a ping and still carries a whole turn."""
    await chat.send_to(text_data=frame("ping"))
    assert (await receive(chat))["type"] == "pong"
    await chat.send_to(text_data=frame("turn.start", ref="after", text="still here?", params=SHORT_TURN))
    _, done = await receive_until(chat, {"done", "error"})
    assert done["type"] == "done", done


async def test_a_turn_over_the_pixel_budget_answers_too_many_pixels_without_decoding(
    personas, chat_engine, store, settings, monkeypatch
):
    settings.MAX_REQUEST_PIXELS = 200_000_000
    huge = [await store(HUGE_PNG, f"scan-{index}.png") for index in range(6)]
    assert {(asset.width, asset.height) for asset in huge} == {(8000, 5000)}
    spy = DecodeSpy(monkeypatch)
    chat = await open_chat("bob")
    ids = [str(asset.pk) for asset in huge]
    await chat.send_to(text_data=frame("turn.start", ref="big", text="compare", assets=ids, params=SHORT_TURN))
    error = await receive(chat)
    assert (error["type"], error["code"], error["fatal"], error["ref"]) == ("error", "too_many_pixels", False, "big")
    assert error["message"] == TOO_MANY_PIXELS.format(limit=settings.MAX_REQUEST_PIXELS)
    assert spy.decoded_nothing
    assert await refusals_recorded() == [("too_many_pixels", "failure", 0)]
    await _still_open(chat)
    await chat.disconnect()


async def test_a_turn_without_a_free_decode_slot_answers_busy_and_the_socket_stays_open(
    personas, chat_engine, chat_layer, store, settings
):
    asset = await store(damaged_samples.jpeg((64, 48)), "photo.jpg")
    settings.IMAGE_DECODE_CONCURRENCY = 1
    settings.IMAGE_DECODE_WAIT_SECONDS = 0.2
    chat = await open_chat("bob")
    turn = frame("turn.start", ref="b1", text="what is it?", assets=[str(asset.pk)], params=SHORT_TURN)
    with slots_taken():
        await chat.send_to(text_data=turn)
        error = await receive(chat)
    assert (error["type"], error["code"], error["fatal"], error["ref"]) == ("error", "busy", False, "b1")
    assert error["retry_after"] >= 1
    assert await refusals_recorded() == [("busy", "failure", 0)]
    # The slots are free again: the same turn is answered.
    await chat.send_to(text_data=turn)
    _, done = await receive_until(chat, {"done", "error"})
    assert done["type"] == "done", done
    await chat.disconnect()


async def test_a_file_that_fails_when_used_answers_unreadable_file_and_is_refused_next_time_without_decoding(
    personas, chat_engine, chat_layer, store, monkeypatch
):
    asset = await store(damaged_samples.pdf_with_pages(3, broken=frozenset({2})), "old.pdf", checked_pages=1)
    chat = await open_chat("bob")
    turn = frame("turn.start", ref="pdf", text="summarise", assets=[str(asset.pk)], params=SHORT_TURN)
    await chat.send_to(text_data=turn)
    error = await receive(chat)
    assert (error["type"], error["code"], error["fatal"], error["ref"]) == ("error", "unreadable_file", False, "pdf")
    assert "Page 2" in error["message"]

    def marks() -> list[int]:
        with all_departments(reason="test"):
            return Asset.objects.get(pk=asset.pk).unusable_pages

    assert await sync_to_async(marks)() == [2]
    spy = DecodeSpy(monkeypatch)
    await chat.send_to(text_data=turn)
    again = await receive(chat)
    assert (again["type"], again["code"]) == ("error", "unreadable_file")
    assert spy.decoded_nothing
    assert await refusals_recorded() == [("unreadable_file", "failure", 0)] * 2
    await _still_open(chat)
    await chat.disconnect()
