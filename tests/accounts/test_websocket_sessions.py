"""Websockets follow the HTTP session: refused without one, closed on logout and when idle."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.urls import path, reverse

from accounts.sessions import SESSION_LAST_SEEN_KEY
from accounts.websocket import CLOSE_SESSION_ENDED, SessionBoundConsumerMixin
from tests.accounts.conftest import TEST_PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


class ProbeConsumer(SessionBoundConsumerMixin, AsyncWebsocketConsumer):
    """The smallest consumer that uses the mixin the way the chat consumer does."""

    async def connect(self):
        if await self.session_join():
            await self.accept()
        else:
            await self.close()

    async def receive(self, text_data=None, bytes_data=None):
        if await self.session_alive():
            await self.send(text_data=f"echo {text_data}")

    async def disconnect(self, code):
        await self.session_leave()


application = AuthMiddlewareStack(URLRouter([path("ws/probe/", ProbeConsumer.as_asgi())]))


def signed_in_client() -> Client:
    client = Client()
    assert client.post(reverse("login"), {"username": "bob", "password": TEST_PASSWORD}).status_code == 302
    return client


def communicator_for(client: Client | None) -> WebsocketCommunicator:
    headers = []
    if client is not None:
        headers.append(
            (b"cookie", f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode())
        )
    return WebsocketCommunicator(application, "/ws/probe/", headers=headers)


async def test_websocket_needs_a_session(personas):
    communicator = communicator_for(None)
    connected, _ = await communicator.connect()
    assert not connected


async def test_logout_closes_the_open_websocket(personas):
    client = await sync_to_async(signed_in_client)()
    communicator = communicator_for(client)
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_to(text_data="hello")
    assert await communicator.receive_from() == "echo hello"
    await sync_to_async(client.post)(reverse("logout"))
    closed = await communicator.receive_output(timeout=3)
    assert closed == {"type": "websocket.close", "code": CLOSE_SESSION_ENDED}


async def test_idle_session_closes_the_websocket_at_its_next_message(personas):
    client = await sync_to_async(signed_in_client)()
    communicator = communicator_for(client)
    assert (await communicator.connect())[0]

    def age():
        session = client.session
        session[SESSION_LAST_SEEN_KEY] = time.time() - settings.SESSION_IDLE_SECONDS - 5
        session.save()

    await sync_to_async(age)()
    await communicator.send_to(text_data="still there?")
    assert await communicator.receive_output(timeout=3) == {"type": "websocket.close", "code": CLOSE_SESSION_ENDED}
