"""Who may speak for the client (IP-1, AU-3): X-Forwarded-For is believed only from TRUSTED_PROXIES.

The platform as deployed (``manage.py serve``, the launcher of the Dockerfile and the systemd
unit) behind the real nginx configuration, on loopback. Clients connect from their own loopback
addresses (127.0.0.2, 127.0.0.3) so that the address the audit trail records tells them apart
from nginx (127.0.0.1, the one trusted proxy):

- straight to the app, a client-sent X-Forwarded-For is ignored (HTTP and websocket alike), also
  when it names an administration address;
- through nginx, the real client address is recorded and decides the admin allow-list;
- the request id of an entry is the server's (nginx's, through the proxy); a client-sent one is
  kept apart in the entry's details as ``client_request_id``;
- with the default settings (``make run``, a bare start) nobody is trusted;
- start-up refuses an administration network that contains a trusted proxy's address;
- the Dockerfile, the systemd unit and the compose file launch and trust alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import subprocess
import sys

import httpx
import pytest
import websockets
from websockets.exceptions import WebSocketException

from tests.conftest import require_postgresql
from tests.deploy.conftest import DEPLOY, ROOT, compose_config, require_binary
from tests.support.live_server import LiveServer
from tests.support.nginx import NginxServer

sys.path.insert(0, str(ROOT / "scripts"))
from throwaway_services import free_port

CLIENT = "127.0.0.2"  # an ordinary client
ADMIN_CLIENT = "127.0.0.3"  # the administrators' network, as far as this installation knows
ADMIN_NETWORK = f"{ADMIN_CLIENT}/32"

LATEST_DENIAL = """
import json
from compliance.models import AuditEntry
e = AuditEntry.objects.filter(event_type="access.denied").latest("sequence")
print(json.dumps({"source_ip": e.source_ip, "request_id": e.request_id, "details": e.details}))
"""


def latest_denial(server) -> dict:
    return json.loads(server.shell(LATEST_DENIAL))


def client_from(address: str, **kwargs) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address, **kwargs), timeout=30)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory, tls_pair):
    """The app trusting only 127.0.0.1, with nginx there in front of it."""
    require_postgresql("the proxy trust test")
    require_binary("nginx")
    root = tmp_path_factory.mktemp("proxy-trust")
    https_port = free_port()
    server = LiveServer(
        root / "app",
        env={"ADMIN_ALLOWED_NETWORKS": ADMIN_NETWORK, "CSRF_TRUSTED_ORIGINS": f"https://localhost:{https_port}"},
    )
    server.start(behind_proxy=True)
    cert, key = tls_pair
    try:
        with NginxServer(
            root / "nginx",
            cert=cert,
            key=key,
            upstreams=f"127.0.0.1:{server.port}",
            http_port=free_port(),
            https_port=https_port,
            admin_networks=ADMIN_NETWORK,
        ) as nginx:
            yield server, nginx, ssl.create_default_context(cafile=str(cert))
    finally:
        server.stop()


def test_a_client_sent_forwarded_for_is_ignored_straight_to_the_app(proxied):
    server, _, _ = proxied
    with client_from(CLIENT) as client:
        response = client.get(
            f"{server.base_url}/admin/",
            headers={"X-Forwarded-For": ADMIN_CLIENT, "X-Request-ID": "client-direct-0001"},
        )
    assert response.status_code == 404  # not let in as the administrators' address it claimed
    denial = latest_denial(server)
    assert denial["source_ip"] == CLIENT
    # The entry's request id is the server's own; the client's is kept apart, marked as such.
    assert denial["request_id"] == response.headers["x-request-id"] != "client-direct-0001"
    assert denial["details"]["client_request_id"] == "client-direct-0001"


def test_through_nginx_the_real_client_address_is_recorded(proxied):
    server, nginx, tls = proxied
    with client_from(CLIENT, verify=tls) as client:
        response = client.get(
            f"https://localhost:{nginx.https_port}/d/finance/",
            headers={"X-Forwarded-For": ADMIN_CLIENT, "X-Request-ID": "client-proxied-0001"},
        )
    assert response.status_code == 302  # signed out: the sign-in page, and a recorded refusal
    denial = latest_denial(server)
    assert denial["source_ip"] == CLIENT, nginx.error_log()
    assert re.fullmatch(r"[0-9a-f]{32}", denial["request_id"])  # nginx's $request_id
    assert denial["request_id"] == response.headers["x-request-id"]
    assert denial["details"]["client_request_id"] == "client-proxied-0001"


def test_the_admin_allow_list_sees_the_address_nginx_saw(proxied):
    server, nginx, tls = proxied
    with client_from(ADMIN_CLIENT, verify=tls) as admin, client_from(CLIENT, verify=tls) as other:
        assert admin.get(f"https://localhost:{nginx.https_port}/admin/").status_code == 302  # the sign-in page
        # Straight to the app, the administrators' address is not a header away.
        assert other.get(f"{server.base_url}/admin/", headers={"X-Forwarded-For": ADMIN_CLIENT}).status_code == 404
    with client_from(ADMIN_CLIENT) as admin:
        assert admin.get(f"{server.base_url}/admin/").status_code == 302


async def _refused_handshake(url: str, *, origin: str, headers: dict[str, str], ssl_context=None) -> None:
    with pytest.raises(WebSocketException):
        async with websockets.connect(
            url,
            additional_headers={"Origin": origin, **headers},
            ssl=ssl_context,
            local_addr=(CLIENT, 0),
            open_timeout=30,
        ) as socket:
            await socket.recv()  # accepted only to be closed: the refusal arrives as a close


def test_websockets_record_the_same_address(proxied):
    server, nginx, tls = proxied
    spoofed = {"X-Forwarded-For": ADMIN_CLIENT}
    asyncio.run(_refused_handshake(f"{server.ws_url}/ws/d/finance/chat/", origin=server.base_url, headers=spoofed))
    assert latest_denial(server)["source_ip"] == CLIENT
    origin = f"https://localhost:{nginx.https_port}"
    asyncio.run(
        _refused_handshake(
            f"wss://localhost:{nginx.https_port}/ws/d/finance/chat/", origin=origin, headers=spoofed, ssl_context=tls
        )
    )
    assert latest_denial(server)["source_ip"] == CLIENT, nginx.error_log()


def test_by_default_nobody_speaks_for_the_client(live_server_factory):
    server = live_server_factory()  # no TRUSTED_PROXIES: what make run and a bare start use
    assert server.shell("from django.conf import settings; print(settings.TRUSTED_PROXIES)") == "[]"
    with client_from("127.0.0.1") as client:
        response = client.get(f"{server.base_url}/d/finance/", headers={"X-Forwarded-For": "203.0.113.7"})
    assert response.status_code == 302
    assert latest_denial(server)["source_ip"] == "127.0.0.1"


def test_start_up_refuses_an_admin_network_containing_a_trusted_proxy(tmp_path):
    env = {
        **os.environ,
        "PLATFORM_PROFILE": "test",
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "TRUSTED_PROXIES": "127.0.0.1/32",
        "ADMIN_ALLOWED_NETWORKS": "127.0.0.0/8,10.20.30.0/24",
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(free_port())],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "accounts.E002" in result.stderr and "127.0.0.0/8 overlaps 127.0.0.1/32" in result.stderr


def test_every_launcher_trusts_alike(tmp_path):
    dockerfile = (ROOT / "Dockerfile").read_text()
    unit = (DEPLOY / "systemd" / "platform@.service").read_text()
    for text in (dockerfile, unit):
        assert "manage.py serve" in text
        assert "forwarded-allow-ips" not in text and "proxy-headers" not in text
    rendered = compose_config(tmp_path)
    trusted = re.search(r"TRUSTED_PROXIES: (\S+)", rendered).group(1)
    nginx_address = re.search(r"ipv4_address: (\S+)", rendered).group(1)
    assert trusted == f"{nginx_address}/32"  # nginx alone, not the network (and never 0.0.0.0/0)
    admin_networks = re.search(r"ADMIN_ALLOWED_NETWORKS: (\S+)", rendered).group(1)
    assert "127.0.0.0/8" not in admin_networks  # the example keeps loopback (nginx, systemd) out


def test_the_example_settings_pass_the_start_up_check(tmp_path):
    """deploy/.env.example's trust and admin networks, as systemd would use them, start."""
    values = dict(
        line.split("=", 1)
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line and not line.startswith("#") and "=" in line
    )
    env = {
        **os.environ,
        "PLATFORM_PROFILE": "test",
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "TRUSTED_PROXIES": values["TRUSTED_PROXIES"],
        "ADMIN_ALLOWED_NETWORKS": values["ADMIN_ALLOWED_NETWORKS"],
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
