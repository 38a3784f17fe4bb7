"""Websocket routing; each app contributes its routes here."""

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter

from inference.chat.routing import websocket_urlpatterns as _inference_routes

websocket_urlpatterns: list = [*_inference_routes]
websocket_application = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
