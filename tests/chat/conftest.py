"""Chat fixtures: a real engine on the tiny demo model, signed-in websocket communicators, and
the channel layer in memory and on a real Redis."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from PIL import Image

import inference  # noqa: F401  (offline switches before transformers)
from inference.engine.core import Engine, EngineLimits
from inference.runtime import engine_override
from tests.conftest import channel_layer_use

PASSWORD = "Correct-Horse-9"  # the personas' password (tests/conftest.py make_user)
# Random demo weights never produce an end-of-turn token, so a long turn really is long.
LONG_TURN = {"max_new_tokens": 1500}
SHORT_TURN = {"max_new_tokens": 4}


@pytest.fixture
def chat_engine(shared_demo_model):
    """The process's engine for this test (what require_engine() returns), on the tiny model."""
    with serving_engine(shared_demo_model) as engine:
        yield engine


@contextlib.contextmanager
def serving_engine(model) -> Iterator[Engine]:
    """An engine on ``model`` as the process's engine until the block ends, then shut down."""
    engine = Engine(model, EngineLimits(batch_window_seconds=0.005, max_queue=64, max_concurrent=8))
    try:
        with engine_override(engine):
            yield engine
    finally:
        engine.shutdown()


@pytest.fixture(params=["in-memory", "redis"])
def chat_layer(request, settings):
    """Each websocket test runs on both channel layers."""
    channel_layer_use(request, settings, request.param)
    return request.param


def sign_in(username: str) -> Client:
    client = Client()
    response = client.post("/accounts/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.content[:500]
    return client


def session_cookie(client: Client) -> str:
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def communicator(cookie: str | None, slug: str = "finance", *, origin: str | None = "http://testserver", app=None):
    from config.websocket import websocket_application

    headers = [(b"user-agent", b"pytest-chat")]
    if cookie:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    if origin:
        headers.append((b"origin", origin.encode()))
    return WebsocketCommunicator(
        with_client_address(app or websocket_application), f"/ws/d/{slug}/chat/", headers=headers
    )


def with_client_address(app, address: str = "127.0.0.1"):
    """The communicator leaves out the peer address a server would give; add it, as uvicorn does."""

    async def application(scope, receive, send):
        return await app({**scope, "client": (address, 50000)}, receive, send)

    return application


async def open_chat(username: str, slug: str = "finance"):
    """A connected communicator for ``username`` (signed in through the real login view) and its
    ``hello`` frame."""
    client = await sync_to_async(sign_in)(username)
    chat = communicator(session_cookie(client), slug)
    connected, code = await chat.connect(timeout=5)
    assert connected, code
    hello = json.loads(await chat.receive_from(timeout=5))
    assert hello["type"] == "hello"
    chat.http_client = client
    chat.hello = hello
    return chat


def frame(kind: str, **fields) -> str:
    return json.dumps({"v": 1, "type": kind, **fields})


async def receive(chat, timeout: float = 10) -> dict:
    return json.loads(await chat.receive_from(timeout=timeout))


async def receive_until(chat, kinds: set[str], timeout: float = 60) -> tuple[list[dict], dict]:
    """Frames up to (and including) the first whose type is in ``kinds``."""
    seen = []
    while True:
        item = await receive(chat, timeout)
        seen.append(item)
        if item["type"] in kinds:
            return seen, item


def png_bytes(color=(200, 30, 30), size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def chat_asset_storage(tmp_asset_storage):
    return tmp_asset_storage


@pytest.fixture
def upload_png(personas, system_context):
    """Store a PNG in a department through the assets service; returns the asset."""
    from assets.services import asset_upload
    from departments.tenancy import department_scope

    def do(*, user=None, department=None, color=(200, 30, 30), name="photo.png"):
        department = department or personas.department_a
        with department_scope(department):
            return asset_upload(
                department=department,
                uploaded_by=user or personas.member,
                stream=iter([png_bytes(color)]),
                original_name=name,
            )

    return do


@pytest.fixture(autouse=True)
async def close_helper_thread_connections():
    """sync_to_async helpers in the tests run on a worker thread whose database connection would
    otherwise outlive the test database."""
    yield
    from django.db import connections

    await sync_to_async(connections.close_all)()


@pytest.fixture
def conversation_of(personas, system_context):
    """``make(user, …)``: a conversation of ``user`` with one complete turn, recorded as the
    consumer records it (the answer sealed, the call audited)."""
    from inference.chat.services import conversation_create, conversation_turn_record
    from inference.model_calls import Channel, ModelCall, PromptMessage

    def make(user, department=None, prompt="Hello there", answer="**Hi** <script>x</script>", assets=(), title=""):
        department = department or personas.department_a
        conversation = conversation_create(department=department, owner=user, title=title, acting_user=user)
        conversation_turn_record(
            conversation=conversation,
            user=user,
            prompt=prompt,
            assets=list(assets),
            answer=answer,
            status="complete",
            usage={"prompt_tokens": 3, "completion_tokens": 2},
            finish_reason="stop",
            params={},
            model="demo",
            call=ModelCall(
                channel=Channel.WEBSOCKET,
                model="demo",
                model_sha256="0" * 64,
                prompt=(PromptMessage("user", prompt, tuple(asset.sha256 for asset in assets)),),
                preview=prompt,
                stream=True,
            ),
        )
        return conversation

    return make
