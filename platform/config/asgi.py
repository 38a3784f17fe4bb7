"""ASGI entry point: HTTP through Django, websockets through Channels.

Run with the repository's ``asgi.py`` launcher (which puts ``platform/`` on the import path),
e.g. ``uvicorn asgi:application`` or ``daphne asgi:application`` from the repository root.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402  (needs Django set up)
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from config.request_body import UnreadOversizedBody  # noqa: E402
from config.websocket import websocket_application  # noqa: E402

if settings.MODEL_LOAD_AT_STARTUP:
    from inference.runtime import start_loading

    start_loading()

application = ProtocolTypeRouter(
    {
        # A body declaring more than its endpoint accepts is refused without being read.
        "http": UnreadOversizedBody(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(websocket_application),
    }
)
