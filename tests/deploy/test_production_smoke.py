"""End-to-end smoke test of the production profile behind the real nginx configuration.

PostgreSQL + Redis (from scripts/testenv.py) + uvicorn running PLATFORM_PROFILE=production +
nginx with TLS 1.3 on loopback: log in over HTTPS, check the security headers, the redirect of
plain HTTP, TLS 1.2 refused, administration hidden outside the admin networks.
"""

from __future__ import annotations

import secrets
import ssl
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import require_postgresql, require_service_url
from tests.deploy.conftest import require_binary
from tests.support.form_sign_in import form_sign_in
from tests.support.live_server import LiveServer
from tests.support.nginx import NginxServer
from tests.support.production_keys import production_keys_write

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from throwaway_services import free_port

MEMBER_PASSWORD = "Prod-Smoke-Passw0rd!"


def production_env(directory: Path, *, redis_url: str, https_port: int) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    signing_key, master_keys = production_keys_write(directory, "k-smoke")
    secret_key = directory / "secret_key"
    secret_key.write_text(secrets.token_urlsafe(64))
    return {
        "SECRET_KEY_FILE": str(secret_key),
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "CSRF_TRUSTED_ORIGINS": f"https://localhost:{https_port}",
        "REDIS_URL": redis_url,
        "ASSET_MASTER_KEY_FILE": str(master_keys),
        "AUDIT_SIGNING_KEY_FILE": str(signing_key),
        "TRUSTED_PROXIES": "127.0.0.1/32",
        "LOG_FORMAT": "json",
        "STATIC_ROOT": str(directory / "static"),
    }


def prepare_production(server) -> None:
    server.manage("collectstatic", "--noinput")
    server.shell(
        "from django.contrib.auth import get_user_model; from departments.services import department_create, "
        "membership_add; from django.utils import timezone; "
        "d = department_create(slug='finance', name='Finance', acting_user='system'); "
        f"u = get_user_model().objects.create_user('smoke-member', password={MEMBER_PASSWORD!r}); "
        "u.password_changed_at = timezone.now(); u.save(); "
        "membership_add(user=u, department=d, acting_user='system')"
    )


def production_server(root: Path, *, https_port: int, what: str) -> LiveServer:
    """The production profile served on loopback for an nginx in front of it (``https_port``),
    prepared by prepare_production; ``what`` names the test where a requirement is missing."""
    require_postgresql(what)
    require_binary("nginx")
    redis_url = require_service_url("TEST_REDIS_URL", "Redis")
    env = production_env(root / "secrets", redis_url=redis_url, https_port=https_port)
    server = LiveServer(root / "app", profile="production", env=env)
    server.start(prepare=prepare_production, behind_proxy=True)
    return server


@pytest.fixture(scope="module")
def production_stack(tmp_path_factory, tls_pair):
    """One production stack for the module: starting it is the expensive part."""
    root = tmp_path_factory.mktemp("production")
    http_port, https_port = free_port(), free_port()
    server = production_server(root, https_port=https_port, what="the production smoke test")
    cert, key = tls_pair
    try:
        with NginxServer(
            root / "nginx",
            cert=cert,
            key=key,
            upstreams=f"127.0.0.1:{server.port}",
            http_port=http_port,
            https_port=https_port,
            admin_networks="10.0.0.0/8",
        ) as nginx:
            context = ssl.create_default_context(cafile=str(cert))
            with httpx.Client(base_url=f"https://localhost:{https_port}", verify=context, timeout=30) as client:
                yield server, nginx, client
    finally:
        server.stop()


def test_login_over_https_with_security_headers(production_stack):
    server, nginx, client = production_stack
    page = client.get("/accounts/login/")
    assert page.status_code == 200, nginx.error_log() + server.log()
    headers = page.headers
    assert headers["strict-transport-security"].startswith("max-age=31536000")
    assert headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"].split("script-src")[1].split(";")[0]
    assert "server" not in headers or "nginx/" not in headers["server"]
    response = form_sign_in(client, "smoke-member", MEMBER_PASSWORD, page=page)
    assert response.status_code == 302, response.text[:2000]
    cookies = response.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookies if c.startswith("__Host-sessionid="))
    assert "Secure" in session_cookie
    assert "HttpOnly" in session_cookie
    portal = client.get("/d/finance/")
    assert portal.status_code == 200
    assert "Finance" in portal.text
    # The login is in the audit trail with the client's address as nginx saw it.
    entry = server.shell(
        "from compliance.models import AuditEntry; e = AuditEntry.objects.filter(event_type='auth.login')"
        ".latest('sequence'); print(e.actor_name, e.source_ip)"
    )
    assert entry == "smoke-member 127.0.0.1"


def test_plain_http_redirects_to_https(production_stack):
    _, nginx, _ = production_stack
    response = httpx.get(f"http://localhost:{nginx.http_port}/accounts/login/?next=/d/", follow_redirects=False)
    assert response.status_code == 301
    assert response.headers["location"] == f"https://localhost:{nginx.https_port}/accounts/login/?next=/d/"


def test_tls_12_is_refused(production_stack, tls_pair):
    _, nginx, _ = production_stack
    context = ssl.create_default_context(cafile=str(tls_pair[0]))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://localhost:{nginx.https_port}/healthz", verify=context)


def test_administration_is_hidden_outside_admin_networks(production_stack):
    _, _, client = production_stack
    # This nginx only admits 10.0.0.0/8 to administration; the test client is 127.0.0.1.
    assert client.get("/admin/").status_code == 404
    assert client.get("/metrics").status_code == 404
    # Readiness answers a load balancer with its status alone: the details name internals.
    ready = client.get("/readyz")
    assert ready.status_code in (200, 503) and set(ready.json()) == {"status"}, ready.text
    assert client.get("/healthz").status_code == 200
