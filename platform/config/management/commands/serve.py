"""``manage.py serve``: the production ASGI server (uvicorn: HTTP and websockets).

Who may speak for the client is decided in one place: ``TRUSTED_PROXIES``, read by
``compliance.middleware`` for HTTP requests and by the chat consumer for websockets. uvicorn
therefore believes no forwarded header at all (on its own it would believe ``X-Forwarded-For``
from 127.0.0.1, so that any local client could choose its address): the application sees the
real peer and applies the one list. The Dockerfile, the systemd unit and the tests' live server
all start the platform with this command, so no launcher can trust more than the settings do.

The system checks run first, as for every command: a configuration they refuse (an
administration network containing a trusted proxy, accounts.E002) does not start.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


class Command(BaseCommand):
    help = "Serve HTTP and websockets with uvicorn; forwarded headers are judged by TRUSTED_PROXIES alone."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)

    def handle(self, *args: Any, host: str, port: int, log_level: str, **options: Any) -> None:
        import uvicorn

        from compliance.report_heartbeat import heartbeat_start
        from config.asgi import application

        # This serving process says it is alive every HEARTBEAT_SECONDS (BR-3 of the compliance
        # report); here, not in config.asgi, so that a process that only imports the application
        # (a test, a shell) reports nothing.
        heartbeat_start()

        uvicorn.run(
            application,
            host=host,
            port=port,
            log_level=log_level,
            server_header=False,
            proxy_headers=False,  # the peer address reaches the app untouched (see above)
        )
