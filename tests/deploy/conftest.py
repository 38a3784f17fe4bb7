from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import requirement_missing

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def require_binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path:
        return path
    requirement_missing(f"{name} is not installed (scripts/system-packages test installs it)")


def self_signed(directory: Path, *, ip_addresses: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for localhost (and ``ip_addresses``), valid for a day,
    and its key: ``directory``/server.crt and server.key."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName("localhost"), *(x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses)]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture(scope="session")
def tls_pair(tmp_path_factory) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for localhost / 127.0.0.1."""
    return self_signed(tmp_path_factory.mktemp("tls"), ip_addresses=("127.0.0.1",))


def compose_config(tmp_path: Path) -> str:
    """``docker-compose config`` on a copy of deploy/ (its .env from .env.example, no secrets/):
    the rendered file, after asserting the command succeeded."""
    compose = require_binary("docker-compose")
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns("secrets"))
    shutil.copy(DEPLOY / ".env.example", copy / ".env")
    result = subprocess.run(
        [compose, "-f", str(copy / "compose.yaml"), "config"], capture_output=True, text=True, cwd=copy
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
