"""Websocket routing; each app contributes its routes here."""

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter

websocket_urlpatterns: list = []

try:  # the chat consumer arrives with the chat feature
    from inference.chat.routing import websocket_urlpatterns as _inference_routes
except ImportError:  # pragma: no cover - until inference.chat.routing exists
    _inference_routes = []

websocket_urlpatterns += _inference_routes
websocket_application = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
