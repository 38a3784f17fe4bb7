"""A real slapd for the directory tests, a throw-away CA for StartTLS, and sign-in helpers.

slapd runs from a temporary slapd.conf (mdb backend, Debian's schemas) on a free loopback port,
once per test session. Its directory:

    dc=example,dc=test
      ou=people   dora (finance-staff, quality-staff), erik (analysts ⊂ finance-admins: nested),
                  frank (employeeType=disabled: excluded by the user filter), gina (no mapped group),
                  bob (same name as a local test account), hana, ivan, jack (for tests that change
                  their groups or remove them)
      ou=groups   finance-staff, finance-admins ∋ analysts, quality-staff, hana-group, ivan-group

Tests that change the directory use the users reserved for them, so no test sees another's change.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import requirement_missing

SLAPD = "/usr/sbin/slapd"
SCHEMA_DIR = Path("/etc/ldap/schema")
SUFFIX = "dc=example,dc=test"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-Secret-1"
SERVICE_DN = f"cn=platform-reader,{SUFFIX}"
SERVICE_PASSWORD = "reader-Secret-1"
USER_PASSWORD = "Directory-Pass-7"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
USER_FILTER = "(&(objectClass=inetOrgPerson)(uid=%(user)s)(!(employeeType=disabled)))"

DIRECTORY_USERS = {
    # uid: (given name, surname, employee number, extra attributes)
    "dora": ("Dora", "Deng", "E1001", {}),
    "erik": ("Erik", "Ek", "E1002", {}),
    "frank": ("Frank", "Fu", "E1003", {"employeeType": ["disabled"]}),
    "gina": ("Gina", "Gao", "E1004", {}),
    "bob": ("Bob", "Directory", "E1005", {}),
    "hana": ("Hana", "He", "E1006", {}),
    "ivan": ("Ivan", "Iv", "E1007", {}),
    "jack": ("Jack", "Jin", "E1008", {}),
}
DIRECTORY_GROUPS = {
    "finance-staff": ["uid=dora", "uid=bob"],
    "analysts": ["uid=erik"],
    "finance-admins": ["cn=analysts"],  # nested: erik is a finance admin through analysts
    "quality-staff": ["uid=dora"],
    "hana-group": ["uid=hana", f"cn=placeholder,{SUFFIX}"],  # groupOfNames needs one member
    "ivan-group": ["uid=ivan", "uid=jack"],
    "unmapped": ["uid=gina"],
}


def group_dn(name: str) -> str:
    return f"cn={name},{GROUPS}"


def user_dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE}"


def _member_dn(reference: str) -> str:
    if "," in reference:
        return reference
    kind, name = reference.split("=", 1)
    return user_dn(name) if kind == "uid" else group_dn(name)


@dataclass
class Slapd:
    uri: str
    port: int
    ca_file: Path
    other_ca_file: Path

    def connect(self):
        import ldap

        connection = ldap.initialize(self.uri)
        connection.simple_bind_s(ROOT_DN, ROOT_PASSWORD)
        return connection

    def group_remove_member(self, group: str, uid: str) -> None:
        import ldap

        connection = self.connect()
        connection.modify_s(group_dn(group), [(ldap.MOD_DELETE, "member", [user_dn(uid).encode()])])
        connection.unbind_s()

    def group_add_member(self, group: str, uid: str) -> None:
        import ldap

        connection = self.connect()
        connection.modify_s(group_dn(group), [(ldap.MOD_ADD, "member", [user_dn(uid).encode()])])
        connection.unbind_s()

    def user_delete(self, uid: str) -> None:
        connection = self.connect()
        connection.delete_s(user_dn(uid))
        connection.unbind_s()

    def user_restore(self, uid: str) -> None:
        """Put a deleted user back as loaded (group entries still name it)."""
        import ldap.modlist

        connection = self.connect()
        connection.add_s(user_dn(uid), ldap.modlist.addModlist(_user_entry(uid)))
        connection.unbind_s()


def _certificates(directory: Path) -> tuple[Path, Path, Path, Path]:
    """A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated second CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def make_ca(common_name: str):
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name(common_name))
            .issuer_name(name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256())
        )
        return key, certificate

    ca_key, ca_certificate = make_ca("platform test CA")
    _, other_ca_certificate = make_ca("some other CA")
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_certificate = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca_certificate.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = (directory / "ca.pem", directory / "server.pem", directory / "server.key", directory / "other-ca.pem")
    paths[0].write_bytes(ca_certificate.public_bytes(pem))
    paths[1].write_bytes(server_certificate.public_bytes(pem))
    paths[2].write_bytes(server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    paths[3].write_bytes(other_ca_certificate.public_bytes(pem))
    return paths


def _user_entry(uid: str) -> dict[str, list[bytes]]:
    given, surname, number, extra = DIRECTORY_USERS[uid]
    attributes = {
        "objectClass": ["inetOrgPerson"],
        "uid": [uid],
        "cn": [f"{given} {surname}"],
        "givenName": [given],
        "sn": [surname],
        "mail": [f"{uid}@example.test"],
        "employeeNumber": [number],
        "telephoneNumber": ["+86 10 5555 0000"],  # present in the directory, never copied
        "userPassword": [USER_PASSWORD],
        **extra,
    }
    return {key: [value.encode() for value in values] for key, values in attributes.items()}


def _load_directory(uri: str) -> None:
    import ldap
    import ldap.modlist

    connection = ldap.initialize(uri)
    connection.simple_bind_s(ROOT_DN, ROOT_PASSWORD)

    def add(dn: str, attributes: dict[str, list[str]]) -> None:
        encoded = {key: [value.encode() for value in values] for key, values in attributes.items()}
        connection.add_s(dn, ldap.modlist.addModlist(encoded))

    add(SUFFIX, {"objectClass": ["dcObject", "organization"], "dc": ["example"], "o": ["Example"]})
    add(
        SERVICE_DN,
        {
            "objectClass": ["organizationalRole", "simpleSecurityObject"],
            "cn": ["platform-reader"],
            "userPassword": [SERVICE_PASSWORD],
        },
    )
    add(PEOPLE, {"objectClass": ["organizationalUnit"], "ou": ["people"]})
    add(GROUPS, {"objectClass": ["organizationalUnit"], "ou": ["groups"]})
    for uid in DIRECTORY_USERS:
        connection.add_s(user_dn(uid), ldap.modlist.addModlist(_user_entry(uid)))
    for name in [
        "analysts",
        "finance-staff",
        "finance-admins",
        "quality-staff",
        "hana-group",
        "ivan-group",
        "unmapped",
    ]:
        add(
            group_dn(name),
            {"objectClass": ["groupOfNames"], "cn": [name], "member": [_member_dn(m) for m in DIRECTORY_GROUPS[name]]},
        )
    connection.unbind_s()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def slapd():
    if not os.path.exists(SLAPD) or not shutil.which("ldapsearch"):
        requirement_missing(
            "Debian's slapd and ldap-utils are needed for the directory tests (scripts/system-packages test)"
        )
    try:
        import ldap  # noqa: F401
    except ImportError:
        requirement_missing("python-ldap is not installed")
    root = Path(tempfile.mkdtemp(prefix="platform-slapd-"))
    (root / "db").mkdir()
    ca, server_certificate, server_key, other_ca = _certificates(root)
    port = _free_port()
    includes = "\n".join(f"include {SCHEMA_DIR / name}.schema" for name in ("core", "cosine", "inetorgperson", "nis"))
    (root / "slapd.conf").write_text(
        f"""{includes}
pidfile {root}/slapd.pid
argsfile {root}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCACertificateFile {ca}
TLSCertificateFile {server_certificate}
TLSCertificateKeyFile {server_key}
database mdb
maxsize 10485760
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {root}/db
access to attrs=userPassword by anonymous auth by * none
access to * by dn.exact="{SERVICE_DN}" read by self read by * none
""",
        encoding="utf-8",
    )
    uri = f"ldap://127.0.0.1:{port}"
    log = open(root / "slapd.log", "wb")  # closed in the finally below
    process = subprocess.Popen(
        [SLAPD, "-f", str(root / "slapd.conf"), "-h", uri + "/", "-d", "0"], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            probe = subprocess.run(
                ["ldapsearch", "-x", "-H", uri, "-D", ROOT_DN, "-w", ROOT_PASSWORD, "-b", "", "-s", "base"],
                capture_output=True,
            )
            if probe.returncode in (0, 32):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("slapd did not start:\n" + (root / "slapd.log").read_text(errors="replace")[-3000:])
            time.sleep(0.1)
        _load_directory(uri)
        yield Slapd(uri=uri, port=port, ca_file=ca, other_ca_file=other_ca)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def directory_settings(slapd: Slapd, monkeypatch, **overrides: str) -> dict:
    """The settings ``ldap_settings_from_env`` makes of LDAP_* variables pointing at ``slapd``."""
    from accounts.directory.settings import ldap_settings_from_env

    env = {
        "LDAP_SERVER_URI": slapd.uri,
        "LDAP_BIND_DN": SERVICE_DN,
        "LDAP_BIND_PASSWORD": SERVICE_PASSWORD,
        "LDAP_USER_SEARCH_BASE": PEOPLE,
        "LDAP_USER_FILTER": USER_FILTER,
        "LDAP_GROUP_SEARCH_BASE": GROUPS,
        "LDAP_GROUP_TYPE": "nested_groupofnames",
        **overrides,
    }
    for name in list(os.environ):
        if name.startswith("LDAP_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return ldap_settings_from_env(is_production=False)


@pytest.fixture
def directory(slapd, settings, monkeypatch):
    """Django configured against the test slapd (plain LDAP on loopback: allowed outside production)."""
    values = directory_settings(slapd, monkeypatch)
    for name, value in values.items():
        setattr(settings, name, value)
    settings.AUTHENTICATION_BACKENDS = [
        "accounts.directory.backends.DirectoryBackend",
        "accounts.directory.backends.LocalAccountBackend",
    ]
    return slapd


# --- sign-in helpers ------------------------------------------------------------------------------


def totp_now(device) -> str:
    """The current code of a django-otp TOTP device, computed as an authenticator app would."""
    from django_otp.oath import TOTP

    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    return f"{totp.token():0{device.digits}d}"


def totp_next(device) -> str:
    """The code of the next time step (tolerance 1 accepts it), to avoid replaying one code."""
    from django_otp.oath import TOTP

    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + device.step
    return f"{totp.token():0{device.digits}d}"


@pytest.fixture
def make_admin(make_user):
    """An administrator of ``role`` with an enrolled authenticator; returns (user, device)."""
    from django.utils import timezone
    from django_otp.plugins.otp_totp.models import TOTPDevice

    def make(role: str, username: str | None = None):
        user = make_user(username or f"{role}-admin", admin_role=role, password_changed_at=timezone.now())
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
        return user, device

    return make


TEST_PASSWORD = "Correct-Horse-9"  # the make_user fixture's


def sign_in_with_totp(client, user, device, *, password: str = TEST_PASSWORD, **extra):
    """The real two-step sign-in: password, then the authenticator's code."""
    from django.urls import reverse

    response = client.post(reverse("login"), {"username": user.username, "password": password}, **extra)
    assert response.status_code == 302, response.content[:500]
    assert response["Location"] == reverse("login-verify")
    response = client.post(reverse("login-verify"), {"token": totp_now(device)}, **extra)
    assert response.status_code == 302
    return response


# --- websockets: the channel layer, in memory and on a real Redis ---------------------------------


@pytest.fixture(params=["in-memory", "redis"])
def channel_layer(request, settings):
    """The configured channel layer; the test runs once per backend."""
    from channels.layers import get_channel_layer

    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        settings.CHANNEL_LAYERS = {
            "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [url]}}
        }
    else:
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    return get_channel_layer()


def websocket_of(layer, user) -> str:
    """A channel standing for one open websocket of ``user``: it joined the user's group, as the
    chat consumer does."""
    from asgiref.sync import async_to_sync

    from accounts.sessions import user_group_name

    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(user_group_name(user.pk), channel)
    return channel


def message_for(layer, channel: str, timeout: float = 2.0):
    """The next message on ``channel``, or None after ``timeout``."""
    import asyncio

    from asgiref.sync import async_to_sync

    async def receive():
        try:
            return await asyncio.wait_for(layer.receive(channel), timeout)
        except TimeoutError:
            return None

    return async_to_sync(receive)()
