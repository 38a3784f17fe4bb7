"""``manage.py serve``: the production ASGI server (uvicorn: HTTP and websockets).

Who may speak for the client is decided in one place: ``TRUSTED_PROXIES``, read by
``compliance.middleware`` for HTTP requests and by the chat consumer for websockets. uvicorn
therefore believes no forwarded header at all (on its own it would believe ``X-Forwarded-For``
from 127.0.0.1, so that any local client could choose its address): the application sees the
real peer and applies the one list. The Dockerfile, the systemd unit and the tests' live server
all start the platform with this command, so no launcher can trust more than the settings do.

The system checks run first, as for every command: a configuration they refuse (an
administration network containing a trusted proxy, accounts.E002) does not start.

Before it listens, the model's code (torch, transformers, the family's class) is imported: those
imports are what held the GIL during a load, stalling every request; the weights then load in
the background while the server answers (``inference.runtime.model_code_import``).

SIGTERM (systemd, docker stop) or Ctrl-C: the server keeps its connections while running streams
finish, within ``SHUTDOWN_GRACE_SECONDS``, takes no new turn meanwhile, ends what still runs with
a clear error, then closes the connections, waits at most ``STORE_SECONDS`` for the turns to be
stored, chains the pending audit entries and exits (``inference.shutdown``; docs/operations.md,
"Stopping"). A second Ctrl-C (SIGINT) ends the streams at once.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
# After the grace period: how long the closed connections get to store their turns.
STORE_SECONDS = 5

logger = logging.getLogger(__name__)


def draining_server(config, grace: float):
    """A uvicorn server whose shutdown first drains the engine (inference.shutdown)."""
    import uvicorn

    from inference.shutdown import audit_pending_seal_bounded, engine_stop, graceful_stop

    class DrainingServer(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            # Connections stay open meanwhile: the streams being waited for are relayed on them,
            # and a new turn is answered with a clear refusal rather than a refused connection.
            await graceful_stop(grace, hurry=lambda: self.force_exit)
            await super().shutdown(sockets)  # closes connections, waits <= STORE_SECONDS for them
            await audit_pending_seal_bounded()
            engine_stop()

    return DrainingServer(config)


class Command(BaseCommand):
    help = "Serve HTTP and websockets with uvicorn; forwarded headers are judged by TRUSTED_PROXIES alone."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)

    def handle(self, *args: Any, host: str, port: int, log_level: str, **options: Any) -> None:
        import uvicorn
        from django.conf import settings

        from compliance.report_heartbeat import heartbeat_start
        from inference.runtime import model_code_import

        seconds = model_code_import()  # before the load starts (config.asgi) and before listening
        logger.info("model code imported in %.1f s", seconds)
        from config.asgi import application

        # This serving process says it is alive every HEARTBEAT_SECONDS (BR-3 of the compliance
        # report); here, not in config.asgi, so that a process that only imports the application
        # (a test, a shell) reports nothing.
        heartbeat_start()

        config = uvicorn.Config(
            application,
            host=host,
            port=port,
            log_level=log_level,
            server_header=False,
            proxy_headers=False,  # the peer address reaches the app untouched (see above)
            timeout_graceful_shutdown=STORE_SECONDS,
        )
        draining_server(config, float(settings.SHUTDOWN_GRACE_SECONDS)).run()
