"""IA-3, DC-1 (and DI-1's transit line): a live TLS probe of PUBLIC_URL.

The real production stack (uvicorn in the production profile behind the real nginx site
configuration, TLS 1.3 only, then with TLS 1.2 on) makes them pass; a server that still speaks
TLS 1.1, a server without HSTS or with a cookie lacking its flags, a certificate from another CA,
plain HTTP and missing settings make them fail, each naming the variable the probe read.
"""

from __future__ import annotations

import http.server
import ssl
import sys
import threading
import warnings
from pathlib import Path

import pytest

from compliance.report import FAIL, PASS, compliance_report_build
from tests.deploy.conftest import self_signed, tls_pair  # noqa: F401  (the fixture)
from tests.deploy.test_production_smoke import production_server
from tests.support.nginx import NginxServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from throwaway_services import free_port

pytestmark = pytest.mark.django_db


def controls(*ids: str) -> dict:
    return {r.control: r for r in compliance_report_build().results if r.control in ids}


@pytest.fixture(scope="module")
def production(tmp_path_factory, tls_pair):  # noqa: F811
    """The production profile served by uvicorn, behind nginx with TLS 1.3 only and with 1.2 too."""
    root = tmp_path_factory.mktemp("report-tls")
    strict, lenient = free_port(), free_port()
    server = production_server(root, https_port=strict, what="the production stack")
    cert, key = tls_pair
    common = {"cert": cert, "key": key, "upstreams": f"127.0.0.1:{server.port}", "admin_networks": "10.0.0.0/8"}
    try:
        with (
            NginxServer(root / "nginx13", http_port=free_port(), https_port=strict, **common),
            NginxServer(root / "nginx12", http_port=free_port(), https_port=lenient, tls12=True, **common),
        ):
            yield {"strict": strict, "lenient": lenient, "upstream": server.port}
    finally:
        server.stop()


@pytest.fixture
def probe_settings(settings, tls_pair):  # noqa: F811
    settings.TLS_CA_BUNDLE = str(tls_pair[0])
    settings.SESSION_COOKIE_SECURE = True  # as the production process the report runs beside
    settings.SESSION_COOKIE_NAME = "__Host-sessionid"
    return settings


def test_the_production_stack_passes_ia3_and_dc1(production, probe_settings):
    probe_settings.PUBLIC_URL = f"https://localhost:{production['strict']}/"
    results = controls("IA-3", "DC-1", "DI-1")
    ia3, dc1 = results["IA-3"], results["DC-1"]
    assert ia3.status == PASS, ia3.evidence
    assert "certificate localhost verified" in ia3.evidence[0]
    assert any(
        line.startswith("✓ Strict-Transport-Security on the sign-in page: max-age=31536000") for line in ia3.evidence
    )
    cookies = [line for line in ia3.evidence if line.startswith("✓ cookie __Host-csrftoken")]
    assert cookies and "httponly" in cookies[0] and "secure" in cookies[0]
    assert dc1.status == PASS, dc1.evidence
    assert "TLS 1.2 (allowed, 1.3 preferred) accepted: no" in dc1.evidence[1]
    assert [line.state for line in dc1.evidence[2:]] == [PASS, PASS]  # 1.1 and 1.0 refused by the server
    assert results["DI-1"].evidence[-1].state == PASS


def test_tls_12_on_is_reported_and_allowed(production, probe_settings):
    probe_settings.PUBLIC_URL = f"https://localhost:{production['lenient']}/"
    dc1 = controls("DC-1")["DC-1"]
    assert dc1.status == PASS, dc1.evidence
    assert "TLS 1.2 (allowed, 1.3 preferred) accepted: yes" in dc1.evidence[1]


def test_missing_or_wrong_settings_fail_naming_the_variable_read(production, probe_settings, tmp_path):
    probe_settings.PUBLIC_URL = ""
    results = controls("IA-3", "DC-1")
    assert results["IA-3"].status == results["DC-1"].status == FAIL
    assert "PUBLIC_URL is not set" in results["IA-3"].evidence[0]
    probe_settings.PUBLIC_URL = f"http://localhost:{production['upstream']}/"
    assert "PUBLIC_URL='http://localhost" in controls("DC-1")["DC-1"].evidence[0]
    probe_settings.PUBLIC_URL = f"https://localhost:{production['upstream']}/"  # the app itself: no TLS
    assert controls("DC-1")["DC-1"].evidence[0].state == FAIL
    probe_settings.PUBLIC_URL = f"https://localhost:{production['strict']}/"
    probe_settings.TLS_CA_BUNDLE = str(tmp_path / "absent.pem")
    assert f"TLS_CA_BUNDLE='{tmp_path / 'absent.pem'}' is not a readable file" in controls("IA-3")["IA-3"].evidence[0]
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(self_signed(tmp_path / "other")[0].read_bytes())
    probe_settings.TLS_CA_BUNDLE = str(other_ca)
    ia3 = controls("IA-3")["IA-3"]
    assert ia3.status == FAIL
    assert f"certificate not verified against TLS_CA_BUNDLE={other_ca}" in ia3.evidence[0]


# --- servers that get it wrong ----------------------------------------------------------------------
class CarelessHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Set-Cookie", "sessionid=abc; Path=/")  # neither Secure nor HttpOnly
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def careless_server(tmp_path):
    """HTTPS that still accepts TLS 1.0 and 1.1, sends no HSTS and a cookie without its flags."""
    cert, key = self_signed(tmp_path / "careless")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("ALL:@SECLEVEL=0")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CarelessHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], cert
    finally:
        server.shutdown()
        server.server_close()


def test_old_protocols_missing_hsts_and_careless_cookies_fail(careless_server, settings):
    port, cert = careless_server
    settings.PUBLIC_URL, settings.TLS_CA_BUNDLE = f"https://localhost:{port}/", str(cert)
    results = controls("IA-3", "DC-1")
    dc1, ia3 = results["DC-1"], results["IA-3"]
    assert dc1.status == FAIL
    assert [line.state for line in dc1.evidence] == [PASS, PASS, FAIL, FAIL]  # 1.1 and 1.0 accepted
    assert dc1.evidence[2].startswith("✗ TLSv1.1") and "TLSv1.1 " in dc1.evidence[2]
    assert ia3.status == FAIL
    assert "✗ Strict-Transport-Security on the sign-in page: none" in ia3.evidence
    assert any(line.startswith("✗ cookie sessionid set by the sign-in page") for line in ia3.evidence)
