"""The pages of a PDF a chat turn sends (assets.documents.model_pages) and how the answer records
them: pinned pages, the first pages when there is no text layer, the recorded pages sent again
with the history, thumbnails of those pages under the answer (live frame and after a reload),
the audit entry's page numbers.

The real consumer, login and demo engine; every page of the generated PDF has its own width, so
the images the engine receives tell which pages they are (``engine.submit`` is wrapped to look,
and still runs)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from assets.reading import DEFAULT_MODEL_SIDE, THUMBNAIL_SIDE
from compliance.events import EventType
from compliance.models import AuditEntry
from departments.tenancy import all_departments
from inference.models import ConversationMessage
from tests.assets.test_retrieval_pdf import rendered_width, text_pdf
from tests.chat.conftest import SHORT_TURN, frame, open_chat, receive_until, sign_in
from tests.support.assets import asset_upload_bytes

pytestmark = pytest.mark.django_db(transaction=True)

PAGES = 12


@pytest.fixture
def store_pdf(personas, system_context):
    def do(pages: list[str], name: str = "manual.pdf", department=None):
        department = department or personas.department_a
        return asset_upload_bytes(text_pdf(pages), name, department=department, uploaded_by=personas.member)

    return sync_to_async(do)


@pytest.fixture
def submitted(chat_engine, record_submits):
    return record_submits(chat_engine)


def widths(message) -> list[int]:
    return [image.size[0] for image in message.images]


def refs(asset, pages) -> list[dict]:
    return [{"asset": str(asset.pk), "page": page} for page in pages]


@sync_to_async
def answer_of(conversation_id) -> ConversationMessage:
    with all_departments(reason="test inspects stored messages"):
        return ConversationMessage.objects.filter(conversation_id=conversation_id, role="assistant").latest("pk")


@sync_to_async
def model_calls(event_type=EventType.INFERENCE) -> list[AuditEntry]:
    entries = AuditEntry.objects.filter(event_type=event_type).order_by("sequence")
    return [entry for entry in entries if entry.details.get("channel") == "websocket"]


async def turn(chat, text: str, assets, conversation=None) -> dict:
    fields = {"conversation": conversation} if conversation else {}
    await chat.send_to(
        text_data=frame("turn.start", text=text, assets=[str(a.pk) for a in assets], params=SHORT_TURN, **fields)
    )
    _frames, done = await receive_until(chat, {"done", "error"})
    assert done["type"] == "done", done
    return done


async def test_pinned_pages_are_sent_recorded_shown_and_audited(personas, chat_engine, store_pdf, submitted):
    manual = await store_pdf([f"Section {number}" for number in range(1, PAGES + 1)])
    chat = await open_chat("bob")
    done = await turn(chat, "What do p. 9–10 and 第12页 say?", [manual])
    await chat.disconnect()

    # The engine got exactly those pages, in document order.
    assert widths(submitted[-1][-1]) == [rendered_width(page, DEFAULT_MODEL_SIDE) for page in (9, 10, 12)]
    # The answer records them: live in the done frame, stored in the message's usage.
    assert done["usage"]["pages"] == refs(manual, (9, 10, 12))
    answer = await answer_of(done["conversation"])
    assert answer.usage["pages"] == refs(manual, (9, 10, 12))
    # The audit entries of the call list the page numbers (and nothing of the text).
    call = (await model_calls())[-1]
    start = (await model_calls(EventType.INFERENCE_START))[-1]
    assert call.details["pages"] == start.details["pages"] == refs(manual, (9, 10, 12))

    # After a reload the answer shows a thumbnail per page, each opening that page larger.
    client = chat.http_client
    page = await sync_to_async(client.get)(f"/d/finance/?c={done['conversation']}")
    html = page.content.decode()
    thumbnail = f"/d/finance/files/{manual.pk}/thumbnail/"
    for number in (9, 10, 12):
        assert f'href="{thumbnail}?page={number}&amp;size=large"' in html
        assert f'src="{thumbnail}?page={number}"' in html
    small = await sync_to_async(client.get)(f"{thumbnail}?page=9")
    large = await sync_to_async(client.get)(f"{thumbnail}?page=9&size=large")
    assert small.status_code == large.status_code == 200 and small["Content-Type"] == "image/png"
    from io import BytesIO

    from PIL import Image

    from assets.documents.model_pages import PAGE_VIEW_SIDE

    assert Image.open(BytesIO(small.content)).size[0] == rendered_width(9, THUMBNAIL_SIDE)
    assert Image.open(BytesIO(large.content)).size[0] == rendered_width(9, PAGE_VIEW_SIDE)


async def test_without_pins_or_text_layer_the_first_pages_go_and_the_history_resends_recorded_pages(
    personas, chat_engine, store_pdf, submitted
):
    manual = await store_pdf([f"Section {number}" for number in range(1, PAGES + 1)])
    chat = await open_chat("bob")
    first = await turn(chat, "Summarise this manual", [manual])
    assert widths(submitted[-1][-1]) == [rendered_width(page, DEFAULT_MODEL_SIDE) for page in (1, 2, 3, 4)]
    assert first["usage"]["pages"] == refs(manual, (1, 2, 3, 4))

    pinned = await turn(chat, "And page 7?", [manual], conversation=first["conversation"])
    assert pinned["usage"]["pages"] == refs(manual, (7,))
    # A follow-up without files: the earlier turns' files send again the pages their answers drew on.
    follow = await turn(chat, "Compare the two", [], conversation=first["conversation"])
    await chat.disconnect()
    messages = submitted[-1]
    with_images = [widths(message) for message in messages if message.images]
    assert with_images == [
        [rendered_width(page, DEFAULT_MODEL_SIDE) for page in (1, 2, 3, 4)],
        [rendered_width(7, DEFAULT_MODEL_SIDE)],
    ]
    assert "pages" not in follow["usage"]  # the turn's own files drew on no page


async def test_an_image_records_no_pages_and_a_page_out_of_range_is_not_pinned(
    personas, chat_engine, store_pdf, upload_png, submitted
):
    photo = await sync_to_async(upload_png)()
    manual = await store_pdf(["one", "two"])
    chat = await open_chat("bob")
    done = await turn(chat, "page 40 of the manual, please", [photo, manual])
    await chat.disconnect()
    assert done["usage"]["pages"] == refs(manual, (1, 2))  # page 40 does not exist: the first pages
    assert len(submitted[-1][-1].images) == 3


@pytest.mark.parametrize("query", ["?page=3", "?page=0", "?page=x", "?page=-1", "?page=%D9%A3", "?page=" + "9" * 5000])
def test_a_page_the_file_does_not_have_is_404(personas, system_context, query):
    manual = asset_upload_bytes(
        text_pdf(["one", "two"]), "two.pdf", department=personas.department_a, uploaded_by=personas.member
    )
    client = sign_in("bob")
    assert client.get(f"/d/finance/files/{manual.pk}/thumbnail/{query}").status_code == 404
    assert client.get(f"/d/finance/files/{manual.pk}/thumbnail/?page=2").status_code == 200
    # Another department's member: the same 404 as for any of this department's files.
    outsider = sign_in("charlie")
    assert outsider.get(f"/d/finance/files/{manual.pk}/thumbnail/?page=2").status_code == 404
    entries = AuditEntry.objects.filter(event_type=EventType.ASSET_VIEW, object_id=manual.pk)
    views = [(entry.details["view"], entry.details.get("page")) for entry in entries]
    assert views == [("thumbnail", 2)]  # the refused ones are access.denied entries
