"""A real, throw-away slapd for the directory tests, with a CA of its own for StartTLS.

slapd runs from a temporary slapd.conf (mdb backend, Debian's schemas) on a free loopback port.
Its directory:

    dc=example,dc=test
      ou=people   dora (finance-staff, quality-staff), erik (analysts ⊂ finance-admins: nested),
                  frank (employeeType=disabled: excluded by the user filter), gina (no mapped group),
                  bob (same name as a local test account), hana, ivan, jack (for tests that change
                  their groups or remove them)
      ou=groups   finance-staff, finance-admins ∋ analysts, quality-staff, hana-group, ivan-group

``slapd_running()`` starts it and loads that directory; the session fixture in
tests/accounts/conftest.py decides whether a missing slapd skips or fails.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.waiting import WaitTimeout, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from throwaway_services import free_port, stop_process

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


class SlapdError(RuntimeError):
    pass


def slapd_missing() -> str | None:
    """Why slapd cannot run here (Debian's slapd, ldap-utils, python-ldap), or None."""
    if not os.path.exists(SLAPD) or not shutil.which("ldapsearch"):
        return "Debian's slapd and ldap-utils are needed for the directory tests (scripts/system-packages test)"
    try:
        import ldap  # noqa: F401
    except ImportError:
        return "python-ldap is not installed"
    return None


def _write_config(root: Path, uri: str, ca: Path, server_certificate: Path, server_key: Path) -> Path:
    includes = "\n".join(f"include {SCHEMA_DIR / name}.schema" for name in ("core", "cosine", "inetorgperson", "nis"))
    config = root / "slapd.conf"
    config.write_text(
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
    return config


@contextmanager
def slapd_running(*, timeout: float = 20) -> Iterator[Slapd]:
    """Start slapd on a free loopback port, load the test directory, stop and remove it after."""
    root = Path(tempfile.mkdtemp(prefix="platform-slapd-"))
    (root / "db").mkdir()
    ca, server_certificate, server_key, other_ca = _certificates(root)
    port = free_port()
    uri = f"ldap://127.0.0.1:{port}"
    config = _write_config(root, uri, ca, server_certificate, server_key)
    log = open(root / "slapd.log", "wb")  # closed in the finally below
    process = subprocess.Popen(
        [SLAPD, "-f", str(config), "-h", uri + "/", "-d", "0"], stdout=log, stderr=subprocess.STDOUT
    )

    def answers() -> bool:
        if process.poll() is not None:
            raise SlapdError("slapd exited")
        probe = subprocess.run(
            ["ldapsearch", "-x", "-H", uri, "-D", ROOT_DN, "-w", ROOT_PASSWORD, "-b", "", "-s", "base"],
            capture_output=True,
        )
        return probe.returncode in (0, 32)

    try:
        try:
            wait_until(answers, timeout=timeout, interval=0.1)
        except (SlapdError, WaitTimeout) as error:
            log.flush()
            raise SlapdError(
                f"slapd did not start ({error}):\n" + (root / "slapd.log").read_text(errors="replace")[-3000:]
            ) from None
        _load_directory(uri)
        yield Slapd(uri=uri, port=port, ca_file=ca, other_ca_file=other_ca)
    finally:
        stop_process(process)
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
