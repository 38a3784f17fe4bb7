"""Scale-out: two app processes behind the real nginx, sharing PostgreSQL, Redis and DATA_DIR.

Chats go through each process (directly, and over wss:// through nginx); a session made on one
process works on the other; logging out on one closes a websocket held by the other (through the
Redis channel layer); and the two processes write one audit chain that audit_verify accepts.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from pathlib import Path

import httpx
import pytest
import websockets

from tests.conftest import require_postgresql, require_service_url
from tests.deploy.conftest import require_binary
from tests.support.form_sign_in import csrf_token, signed_in_client
from tests.support.live_server import LiveServer
from tests.support.nginx import NginxServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from throwaway_services import free_port

PASSWORD = "Scale-Out-Passw0rd!"


def prepare(server: LiveServer) -> None:
    server.shell(
        "from django.contrib.auth import get_user_model; from django.utils import timezone; "
        "from departments.services import department_create, membership_add; "
        "d = department_create(slug='finance', name='Finance', acting_user='system'); "
        f"u = get_user_model().objects.create_user('scale-user', password={PASSWORD!r}); "
        "u.password_changed_at = timezone.now(); u.save(); "
        "membership_add(user=u, department=d, acting_user='system')"
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, tls_pair, shared_demo_model_dir):
    require_postgresql("the scale-out test")
    require_binary("nginx")
    redis_url = require_service_url("TEST_REDIS_URL", "Redis")
    root = tmp_path_factory.mktemp("scale")
    https_port, http_port = free_port(), free_port()
    env = {
        "REDIS_URL": redis_url,
        "DATA_DIR": str(root / "shared-data"),
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "CSRF_TRUSTED_ORIGINS": f"https://localhost:{https_port}",
        "MODEL_READINESS_CHECK": "true",  # the first /readyz starts loading the model
    }
    first = LiveServer(root / "app1", model_path=shared_demo_model_dir, env=env)
    first.start(prepare=prepare, behind_proxy=True)
    second = LiveServer(
        root / "app2", model_path=shared_demo_model_dir, env=env, database_url=first.env["DATABASE_URL"]
    )
    try:
        second.start(behind_proxy=True)
        for server in (first, second):
            server.wait_for("/readyz")
        cert, key = tls_pair
        with NginxServer(
            root / "nginx",
            cert=cert,
            key=key,
            upstreams=f"127.0.0.1:{first.port},127.0.0.1:{second.port}",
            http_port=http_port,
            https_port=https_port,
        ) as nginx:
            yield first, second, nginx, cert
    finally:
        second.stop()
        first.stop()


async def chat_turn(url: str, *, cookie: str, origin: str, text: str, ssl_context=None) -> dict:
    async with websockets.connect(
        url, additional_headers={"Cookie": cookie, "Origin": origin}, ssl=ssl_context, open_timeout=30
    ) as socket:
        await socket.send(
            json.dumps(
                {
                    "v": 1,
                    "type": "turn.start",
                    "ref": "r1",
                    "conversation": None,
                    "text": text,
                    "params": {"max_new_tokens": 8, "temperature": 0},
                }
            )
        )
        tokens = []
        while True:
            frame = json.loads(await asyncio.wait_for(socket.recv(), timeout=120))
            if frame["type"] == "token":
                tokens.append(frame["text"])
            elif frame["type"] == "error":
                raise AssertionError(frame)
            elif frame["type"] == "done":
                return {"done": frame, "tokens": tokens}


def session_cookie(client: httpx.Client) -> str:
    return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


def test_chats_through_both_processes_share_one_audit_chain(cluster):
    first, second, nginx, cert = cluster
    context = ssl.create_default_context(cafile=str(cert))
    edge = f"https://localhost:{nginx.https_port}"
    # The session lives in PostgreSQL: every process accepts it.
    client = signed_in_client(edge, "scale-user", PASSWORD, verify=context)
    cookie = session_cookie(client)
    results = asyncio.run(_three_turns(first, second, nginx, cookie, context))
    for result in results:
        assert result["done"]["status"] == "complete", result
        assert result["tokens"], result
    counts = first.shell(
        "from departments.tenancy import all_departments\n"
        "from inference.models import ConversationMessage\n"
        "from compliance.models import AuditEntry\n"
        "with all_departments(reason='scale-out test'):\n"
        "    n = ConversationMessage.objects.filter(role='assistant').count()\n"
        "print(n, AuditEntry.objects.filter(event_type='inference.call').count())\n"
    )
    assert counts == "3 3"
    verify = first.manage("audit_verify")
    assert "verified" in verify.stdout.lower(), verify.stdout + verify.stderr
    client.close()


async def _three_turns(first, second, nginx, cookie, context):
    origin_direct = "http://127.0.0.1"
    return await asyncio.gather(
        chat_turn(f"{first.ws_url}/ws/d/finance/chat/", cookie=cookie, origin=origin_direct, text="one"),
        chat_turn(f"{second.ws_url}/ws/d/finance/chat/", cookie=cookie, origin=origin_direct, text="two"),
        chat_turn(
            f"wss://localhost:{nginx.https_port}/ws/d/finance/chat/",
            cookie=cookie,
            origin=f"https://localhost:{nginx.https_port}",
            text="three",
            ssl_context=context,
        ),
    )


def test_logout_on_one_process_closes_a_websocket_on_the_other(cluster):
    first, second, nginx, cert = cluster
    direct_first = signed_in_client(first.base_url, "scale-user", PASSWORD, verify=None)
    cookie = session_cookie(direct_first)

    async def scenario() -> int | None:
        async with websockets.connect(
            f"{second.ws_url}/ws/d/finance/chat/", additional_headers={"Cookie": cookie, "Origin": "http://127.0.0.1"}
        ) as socket:
            hello = json.loads(await asyncio.wait_for(socket.recv(), timeout=30))
            assert hello["type"] == "hello"
            page = direct_first.get("/d/")
            response = direct_first.post(
                "/accounts/logout/",
                data={"csrfmiddlewaretoken": csrf_token(page)},
                headers={"Referer": f"{first.base_url}/d/"},
            )
            assert response.status_code in (200, 302)
            try:
                while True:
                    await asyncio.wait_for(socket.recv(), timeout=30)
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None
        return None

    code = asyncio.run(scenario())
    assert code is not None and code >= 4000, code
    direct_first.close()
