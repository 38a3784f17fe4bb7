"""No evidence line of the compliance report is a constant.

Two tests, on every control and every evidence line:

- the report is built twice, once on an installation dressed to pass as much as it can, once on
  one where everything each line reads is broken: the database rows, the settings the process
  runs with, the database catalogue (a constraint dropped, a column widened, triggers off), the
  structures the checks read from the running code (the permission table, the model registry,
  the masking function). Every line that passes in either run must read differently (state or
  text) in the other: a line that passes whatever happens is a constant, and fails this test;
- the source of the checks never builds a passing line from a literal (``line(True, ...)``) and
  never names the pass state itself: a pass can only come from a computed condition.
"""

from __future__ import annotations

import ast
import contextlib
import http.server
import ipaddress
import json
import os
import ssl
import threading
import warnings
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.utils import timezone

from compliance.report import PASS, compliance_report_build
from tests.compliance.conftest import TcpSink
from tests.compliance.test_report_live import png, standby_running, streaming
from tests.conftest import require_postgresql, require_service_url
from tests.deploy.conftest import self_signed
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=False)
ROOT = Path(__file__).resolve().parents[2]
CHECK_SOURCES = [
    *sorted((ROOT / "compliance" / "report_checks").glob("*.py")),
    ROOT / "compliance" / "report_probes.py",
]


def upload(department, user, red: int):
    from assets.services import asset_upload

    return asset_upload(department=department, uploaded_by=user, stream=iter([png(red)]), original_name=f"{red}.png")


def report_lines() -> dict[tuple[str, str, int], tuple[str, str]]:
    """(control, message id, occurrence) → (state, English text) for every line of a fresh report."""
    lines = {}
    for result in compliance_report_build().results:
        seen = Counter()
        for evidence in result.evidence:
            seen[evidence.template] += 1
            lines[(result.control, evidence.template, seen[evidence.template])] = (evidence.state, str(evidence))
    return lines


class HttpsHandler(http.server.BaseHTTPRequestHandler):
    careful = True

    def do_GET(self):
        self.send_response(200)
        if self.careful:
            self.send_header("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
            self.send_header("Set-Cookie", "__Host-csrftoken=x; Secure; HttpOnly; Path=/; SameSite=Lax")
        else:
            self.send_header("Set-Cookie", "csrftoken=x; Path=/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def https_server(directory: Path, *, careful: bool):
    """PUBLIC_URL's server: TLS 1.3 only with HSTS and flagged cookies, or TLS 1.0+ without them."""
    cert, key = self_signed(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_3 if careful else ssl.TLSVersion.TLSv1
    if not careful:
        context.set_ciphers("ALL:@SECLEVEL=0")
    handler = type("Handler", (HttpsHandler,), {"careful": careful})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://localhost:{server.server_address[1]}/", cert
    finally:
        server.shutdown()
        server.server_close()


def dress_good(settings, tmp_path, django_capture_on_commit_callbacks, sink: TcpSink) -> None:
    """An installation that passes every line it can without a TLS front end or a replica."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from assets.services import asset_delete
    from compliance.backup import backup_create
    from compliance.checkpoints import checkpoint_create
    from compliance.context import RequestContext, request_context
    from compliance.events import EventType
    from compliance.report_checks import AU1_CATEGORIES
    from compliance.report_heartbeat import heartbeat_write
    from compliance.services import audit_record
    from departments.services import department_create, membership_add
    from departments.tenancy import department_scope

    tmp_path.mkdir(parents=True)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.Argon2PasswordHasher"]
    settings.SESSION_COOKIE_SECURE = True
    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("10.20.30.0/24")]
    settings.TRUSTED_PROXIES = [ipaddress.ip_network("127.0.0.1/32")]
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [require_service_url("TEST_REDIS_URL", "Redis")]},
        }
    }
    settings.APP_PROCESSES = 2
    key_ring = tmp_path / "good-keys"
    key_ring.write_text("k1:" + "A" * 43 + "=\n")
    key_ring.chmod(0o600)
    settings.ASSET_MASTER_KEY_FILE = key_ring
    result = tmp_path / "dependency-audit.json"
    result.write_text(
        json.dumps(
            {
                "checked_at": datetime.now(UTC).isoformat(),
                "status": "clean",
                "packages": 61,
                "findings": [],
                "accepted": [],
                "unverified": [],
                "vulnerability_service": "https://pypi.mirror.internal/pypi",
            }
        )
    )
    settings.DEPENDENCY_AUDIT_RESULT = result
    settings.AUDIT_SYSLOG_ADDRESS = f"tcp://127.0.0.1:{sink.port}"
    settings.LDAP_ENABLED, settings.AUTH_LDAP_SERVER_URI = True, "ldaps://dc.example.internal"
    settings.AUTH_LDAP_USER_ATTR_MAP = {"first_name": "givenName", "last_name": "sn", "email": "mail"}
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir(parents=True)

    users = get_user_model()
    admins = {}
    for role in ("system", "security", "audit"):
        admins[role] = users.objects.create_user(f"{role}-officer", password="Correct-Horse-9", admin_role=role)
        TOTPDevice.objects.create(user=admins[role], name="authenticator", confirmed=True)
    member = users.objects.create_user("wang.fang", password="Correct-Horse-9")
    department = department_create(slug="finance", name="Finance", acting_user=admins["system"])
    membership_add(user=member, department=department, acting_user=admins["security"])
    Client().force_login(member)  # a live session of an active account
    with django_capture_on_commit_callbacks(execute=True):
        for name in AU1_CATEGORIES:
            audit_record(event_type=EventType[name], actor=admins["security"] if name == "ROLE_CHANGE" else member)
    settings.ASSET_STORAGE_DIR = tmp_path / "assets"
    with request_context(RequestContext(request_id="good-0001", source_ip="10.20.30.4")):
        with department_scope(department), django_capture_on_commit_callbacks(execute=True):
            asset_delete(asset=upload(department, member, 30), acting_user=member)
            upload(department, member, 60)
    backup = backup_create(output=tmp_path / "backup")
    audit_record(event_type=EventType.BACKUP, object_type="backup", object_repr=str(backup.path))
    audit_record(event_type=EventType.RESTORE, object_type="backup", object_repr=str(backup.path))
    checkpoint_create(reason="test")
    audit_record(event_type=EventType.DIRECTORY_SYNC)
    heartbeat_write(process_id="node-a:100:aaaa", hostname="node-a")
    heartbeat_write(process_id="node-b:200:bbbb", hostname="node-b")


def dress_bad(settings, tmp_path, monkeypatch) -> None:
    """Everything each line reads, broken; the same kinds of data present, in the wrong shape."""
    from django.apps import apps
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.models import Session

    from accounts import permissions
    from accounts.roles import AdminRole
    from assets.models import Asset
    from assets.storage import blob_path
    from compliance import masking
    from compliance.chain import V4
    from compliance.context import RequestContext, request_context
    from compliance.events import EventType
    from compliance.models import AuditForwardState, AuditPending
    from compliance.report_heartbeat import heartbeat_write
    from compliance.sealing import seal_pending
    from compliance.services import audit_record
    from compliance.verification import BACKDATING_TOLERANCE
    from departments.models import Department, Membership
    from departments.services import department_create, membership_add
    from departments.tenancy import department_scope
    from departments.triggers import triggers_remove as department_triggers_remove
    from tests.compliance.test_sealing_clock import pending_insert

    tmp_path.mkdir(parents=True)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.AUTH_PASSWORD_VALIDATORS = [
        {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 6}},
    ]
    settings.PASSWORD_MAX_AGE_DAYS = 365
    settings.LOGIN_MAX_FAILURES = 10
    settings.LOGIN_LOCKOUT_SECONDS = 60
    settings.SESSION_IDLE_SECONDS = 7200
    settings.SESSION_COOKIE_SECURE = False
    settings.AUDIT_RETENTION_DAYS = 90
    settings.MAX_UPLOAD_MB = 4096
    settings.MAX_PDF_PAGES = 0
    settings.API_MAX_BODY_MB = 4096
    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.0/8")]
    settings.TRUSTED_PROXIES = [ipaddress.ip_network("127.0.0.1/32")]
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != "accounts.middleware.AdminNetworkMiddleware"]
    settings.AUDIT_DISABLED = True  # the switch AU-4 looks for
    settings.ASSET_MASTER_KEY_FILE = tmp_path / "no-such-key-ring"
    result = tmp_path / "dependency-audit-bad.json"
    result.write_text(
        json.dumps(
            {
                "checked_at": (datetime.now(UTC) - timedelta(days=40)).isoformat(),
                "status": "findings",
                "packages": 61,
                "findings": [{"id": "PYSEC-0000-1", "package": "x", "version": "1"}],
                "accepted": [],
                "unverified": [],
            }
        )
    )
    settings.DEPENDENCY_AUDIT_RESULT = result
    settings.AUDIT_SYSLOG_ADDRESS = "tcp://127.0.0.1:9"
    settings.LDAP_ENABLED, settings.AUTH_LDAP_SERVER_URI, settings.AUTH_LDAP_START_TLS = True, "ldap://dc", False
    settings.AUTH_LDAP_USER_ATTR_MAP = {"first_name": "givenName", "mobile": "mobile", "home_address": "street"}
    settings.APP_PROCESSES = 3
    settings.AUDIT_CHECKPOINT_LOG = tmp_path / "no-checkpoints.jsonl"  # the good run's log is a file: it stays
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # the structures the checks read from the running code
    monkeypatch.setitem(permissions.POLICY, permissions.Action.ROLE_ASSIGN, permissions._admins(AdminRole.SYSTEM))
    monkeypatch.setitem(
        permissions.POLICY, permissions.Action.USER_MANAGE, permissions._admins(AdminRole.SYSTEM, AdminRole.AUDIT)
    )
    monkeypatch.setattr(
        permissions,
        "CONSOLE",
        {"compliance.auditentry": {"view": permissions.Action.AUDIT_VIEW, "delete": permissions.Action.AUDIT_VIEW}},
    )
    every_model = apps.get_models
    monkeypatch.setattr(
        apps,
        "get_models",
        lambda *args, **kwargs: [m for m in every_model(*args, **kwargs) if m._meta.app_label != "assets"],
    )
    monkeypatch.setattr(masking, "mask_identifiers", lambda text: text)
    # the database catalogue: no unique user names, no triggers on the audit table or on memberships
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "accounts_user")
        for name, constraint in constraints.items():
            if constraint["unique"] and constraint["columns"] == ["username"] and not constraint["primary_key"]:
                cursor.execute(f'ALTER TABLE accounts_user DROP CONSTRAINT "{name}"')
        cursor.execute("ALTER TABLE compliance_auditentry DISABLE TRIGGER USER")
    department_triggers_remove(connection)

    users = get_user_model()
    users.objects.create_user("root", password="x", is_superuser=True)
    users.objects.create_user("Root", password="x")
    stale = users.objects.create_user("old.account", password="x")
    users.objects.filter(pk=stale.pk).update(last_login=timezone.now() - timedelta(days=400))
    users.objects.create_user("nobody.in.particular", password="x")
    gone = users.objects.create_user("left.company", password="x")
    from django.test import Client

    Client().force_login(gone)
    users.objects.filter(pk=gone.pk).update(is_active=False)
    sysadmin = users.objects.create_user("sys-only", password="x", admin_role="system")
    department = department_create(slug="finance", name="Finance", acting_user="system")
    membership_add(
        user=users.objects.create_user("member.b", password="x"), department=department, acting_user="system"
    )
    audit_record(event_type=EventType.ROLE_CHANGE, actor=sysadmin)
    AuditForwardState.objects.create(
        address=settings.AUDIT_SYSLOG_ADDRESS,
        transport="tcp",
        last_success_at=timezone.now() - timedelta(days=3),
        last_success_sequence=1,
        last_failure_at=timezone.now(),
        last_failure="ConnectionRefusedError",
    )
    heartbeat_write(process_id="lonely:1:cccc", hostname="lonely")
    settings.ASSET_STORAGE_DIR = tmp_path / "assets"
    settings.ASSET_MASTER_KEY_FILE = tmp_path / "keys-for-the-upload"
    with department_scope(department):
        kept = upload(department, sysadmin, 90)
    audit_record(event_type=EventType.ASSET_DELETE, obj=kept, department=department)  # recorded, not done
    blob_path(kept.storage_name).write_bytes(b"plaintext, not the sealed chunk format")
    Asset._base_manager.filter(pk=kept.pk).update(sha256="")
    orphan = blob_path("e" * 32)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"MMA\x01 left behind")
    os.utime(orphan, (0, 0))
    AuditPending(  # an entry as the release before sealed previews wrote it
        timestamp=timezone.now(),
        actor_type="user",
        actor_id=str(sysadmin.pk),
        actor_name=sysadmin.username,
        event_type=EventType.INFERENCE,
        outcome="success",
        details={"prompt_preview": "发票号 12345678 的金额是多少"},
        format_version=V4.version,
    ).save(_from_audit_record=True)
    settings.ASSET_MASTER_KEY_FILE = tmp_path / "no-such-key-ring"
    users.objects.create_user("demo-viewer", password="x")
    Membership.objects.create(user=sysadmin, department=department, role="member")  # the guards are off
    Department.objects.filter(pk=department.pk).update(classification=99)
    Session.objects.bulk_create(
        Session(session_key=f"expired{n:04d}", session_data="", expire_date=timezone.now() - timedelta(days=1))
        for n in range(1000)
    )
    with request_context(RequestContext(request_id="", source_ip="10.0.0.8")):
        audit_record(event_type=EventType.ASSET_VIEW, actor=sysadmin)
    pending_insert(timezone.now() - BACKDATING_TOLERANCE - timedelta(hours=2), version=V4.version, repr="back-dated")
    seal_pending()
    with connection.cursor() as cursor:  # wide enough for the AU-4 probe's oversized entry
        cursor.execute("ALTER TABLE compliance_auditpending ALTER COLUMN request_id TYPE varchar(500)")
        cursor.execute("ALTER TABLE compliance_auditentry ALTER COLUMN request_id TYPE varchar(500)")
    settings.MAX_IMAGE_PIXELS = 0  # after the upload above
    settings.PROFILE, settings.IS_PRODUCTION = "production", True  # last: production refuses a superuser


def test_no_evidence_line_passes_whatever_the_installation(
    settings, tmp_path, monkeypatch, django_capture_on_commit_callbacks, audit_files
):
    require_postgresql("changing the database catalogue inside the test's transaction")
    from departments.tenancy import all_departments

    sink = TcpSink()
    try:
        with (
            standby_running(),
            https_server(tmp_path / "careful", careful=True) as (url, cert),
            transaction.atomic(),
        ):
            settings.PUBLIC_URL, settings.TLS_CA_BUNDLE = url, str(cert)
            wait_until(streaming, timeout=60, message="the standby never streamed")
            dress_good(settings, tmp_path / "good", django_capture_on_commit_callbacks, sink)
            good = report_lines()
            transaction.set_rollback(True)
    finally:
        sink.close()
    assert sink.received, "the SIEM sink received nothing: AU-5 cannot have passed"
    wait_until(lambda: not streaming(), message="the standby is still streaming")
    with (
        https_server(tmp_path / "careless", careful=False) as (url, _cert),
        transaction.atomic(),
        monkeypatch.context() as patch,
    ):
        # the careless server's certificate is not the one TLS_CA_BUNDLE (still the careful one's) names
        settings.PUBLIC_URL = url
        dress_bad(settings, tmp_path / "bad", patch)
        with all_departments(reason="the tenancy refusal PI-2 looks for, lifted"):
            bad = report_lines()
        transaction.set_rollback(True)

    constant = sorted(
        f"{key[0]}: {good[key][1]}"
        for key in good.keys() & bad.keys()
        if PASS in (good[key][0], bad[key][0]) and good[key] == bad[key]
    )
    assert not constant, "evidence lines that pass whatever the installation:\n" + "\n".join(constant)
    # The good installation really passes what it can (otherwise the comparison proves little):
    # every control has a passing line (a TLS server, a streaming replica, a deleted file, a SIEM,
    # two hosts' processes are all there).
    passing = {key[0] for key, (state, _) in good.items() if state == PASS}
    needs_more: set[str] = set()
    every = {key[0] for key in good}
    assert every - needs_more <= passing, sorted(every - needs_more - passing)


def _calls(tree: ast.AST, name: str):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name:
            yield node


def test_no_check_builds_a_pass_from_a_literal():
    for path in CHECK_SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        assert "PASS" not in names, f"{path.name} names the pass state: a pass must come from line(condition, ...)"
        strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)}
        assert PASS not in strings, f"{path.name} spells the pass state"
        for call in _calls(tree, "line"):
            condition = call.args[0]
            assert not isinstance(condition, ast.Constant) or condition.value is False, (
                f"{path.name}:{call.lineno}: line() with a constant condition"
            )
        for call in _calls(tree, "Evidence"):
            pytest.fail(f"{path.name}:{call.lineno}: build lines with line(), manual() or not_applicable()")
