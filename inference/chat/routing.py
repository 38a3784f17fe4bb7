"""Websocket routes of the inference app (collected by config/websocket.py)."""

from django.urls import path

from inference.chat.consumer import ChatConsumer

websocket_urlpatterns = [
    path("ws/d/<slug:department_slug>/chat/", ChatConsumer.as_asgi()),
]
