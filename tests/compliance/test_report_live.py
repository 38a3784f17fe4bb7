"""The report's live evidence: each control below made to fail and to pass by changing the real
thing it looks at (the database, a real TCP listener, a real backup, a real streaming replica,
real serving processes), never by telling the report what to say."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.utils import timezone

from accounts.roles import AdminRole
from compliance.events import EventType
from compliance.report import FAIL, MANUAL, NOT_APPLICABLE, PASS, compliance_report_build
from compliance.services import audit_record
from tests.compliance.conftest import TcpSink
from tests.conftest import require_postgresql, require_service_url
from tests.deploy.conftest import tls_pair  # noqa: F401  (the fixture)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))


def control(control_id: str):
    return next(result for result in compliance_report_build().results if result.control == control_id)


def states(result) -> list[str]:
    return [line.state for line in result.evidence]


# --- AU-4 -----------------------------------------------------------------------------------------
def test_au4_the_audited_action_rolls_back_when_its_entry_is_refused():
    require_postgresql("the AU-4 probe (a column length the database enforces)")
    from compliance.models import AuditEntry, AuditPending
    from compliance.verification import audit_chain_verify
    from departments.models import Department

    entries, departments = AuditEntry.objects.count(), Department.objects.count()
    result = control("AU-4")
    assert result.status == PASS, result.evidence
    probe = result.evidence[0]
    assert "row written: yes" in probe and "SQLSTATE 22001" in probe and "left after the failure: no" in probe
    # the probe left nothing: no department, no entry, and the chain still verifies
    assert Department.objects.count() == departments and not Department.objects.filter(slug__startswith="au4-probe")
    assert AuditEntry.objects.count() == entries and not AuditPending.objects.exists()
    assert audit_chain_verify().ok


def test_au4_fails_when_the_database_accepts_what_it_should_refuse():
    require_postgresql("changing a column inside the test's transaction")
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE compliance_auditpending ALTER COLUMN request_id TYPE varchar(500)")
        cursor.execute("ALTER TABLE compliance_auditentry ALTER COLUMN request_id TYPE varchar(500)")
    result = control("AU-4")
    assert result.status == FAIL
    assert result.evidence[0].state == FAIL and "accepted the oversized audit entry" in result.evidence[0]


def test_au4_fails_on_a_switch_that_could_turn_audit_off(settings):
    settings.AUDIT_ENABLED = False
    result = control("AU-4")
    assert result.status == FAIL
    assert "✗ settings that could switch auditing off: AUDIT_ENABLED" in result.evidence


# --- AC-5 -----------------------------------------------------------------------------------------
def test_ac5_from_the_permission_table_and_who_changed_policy(make_user, monkeypatch):
    from accounts import permissions

    security = make_user("sec-officer", admin_role=AdminRole.SECURITY)
    system = make_user("sys-officer", admin_role=AdminRole.SYSTEM)
    assert control("AC-5").evidence[-1].state == NOT_APPLICABLE  # nobody changed policy yet
    audit_record(event_type=EventType.SECURITY_SETTING_CHANGE, actor=security)
    result = control("AC-5")
    assert result.status == PASS, result.evidence
    assert "1 access-policy changes in the audit trail by 1 people" in result.evidence[-1]

    audit_record(event_type=EventType.ROLE_CHANGE, actor=system)  # a policy change by the wrong role
    result = control("AC-5")
    assert result.status == FAIL and f"{system.pk} (system)" in result.evidence[-1]

    monkeypatch.setitem(
        permissions.POLICY,
        permissions.Action.RETENTION_MANAGE,
        permissions._admins(AdminRole.SECURITY, AdminRole.SYSTEM),
    )
    assert "retention.manage → security/system" in control("AC-5").evidence[0]


# --- IP-1 -----------------------------------------------------------------------------------------
def test_ip1_loopback_default_passes_and_a_proxy_inside_an_admin_network_fails(settings):
    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    settings.TRUSTED_PROXIES = []
    assert control("IP-1").status == PASS
    settings.TRUSTED_PROXIES = [ipaddress.ip_network("127.0.0.1/32")]  # nginx on the same host
    result = control("IP-1")
    assert result.status == FAIL
    assert "inside an admin network: 127.0.0.1/32" in result.evidence[1]
    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("10.20.30.0/24")]
    assert control("IP-1").status == PASS
    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("10.0.0.0/8")]
    assert "too broad: 10.0.0.0/8" in control("IP-1").evidence[0]


# --- AU-5 -----------------------------------------------------------------------------------------
def test_au5_passes_only_once_the_target_accepted_an_entry(settings, django_capture_on_commit_callbacks):
    from compliance.models import AuditForwardState

    settings.AUDIT_SYSLOG_ADDRESS = ""
    assert "AUDIT_SYSLOG_ADDRESS is empty" in control("AU-5").evidence[-1]
    listener = TcpSink()
    settings.AUDIT_SYSLOG_ADDRESS = f"tcp://127.0.0.1:{listener.port}"
    result = control("AU-5")
    assert result.status == FAIL and "last entry accepted never" in result.evidence[-1]  # an address alone
    with django_capture_on_commit_callbacks(execute=True):
        entry = audit_record(event_type=EventType.LOGIN)
    wait_until(lambda: b"\n" in listener.received, message="the listener received no entry")
    assert json.loads(listener.received.split(b"platform-audit: ", 1)[1])["sequence"] == entry.sequence
    result = control("AU-5")
    assert result.status == PASS, result.evidence
    assert f"(#{entry.sequence})" in result.evidence[-1]

    listener.server.close()  # the SIEM goes away: the next entries fail, and the report says so
    state = AuditForwardState.objects.get(address=settings.AUDIT_SYSLOG_ADDRESS)
    AuditForwardState.objects.filter(pk=state.pk).update(last_failure_at=timezone.now(), last_failure="refused")
    assert control("AU-5").status == FAIL
    AuditForwardState.objects.filter(pk=state.pk).update(
        last_failure_at=None, last_success_at=timezone.now() - timedelta(hours=settings.AUDIT_FORWARD_MAX_AGE_HOURS + 1)
    )
    assert control("AU-5").status == FAIL  # accepted, but not recently


def test_au5_a_refused_connection_is_recorded_as_a_failure(settings, django_capture_on_commit_callbacks):
    from scripts.throwaway_services import free_port

    settings.AUDIT_SYSLOG_ADDRESS = f"tcp://127.0.0.1:{free_port()}"  # nothing listens
    with django_capture_on_commit_callbacks(execute=True):
        audit_record(event_type=EventType.LOGIN)
    result = control("AU-5")
    assert result.status == FAIL and "ConnectionRefusedError" in result.evidence[-1]


def test_au5_udp_is_manual_at_best(settings):
    settings.AUDIT_SYSLOG_ADDRESS = "udp://127.0.0.1:514"
    result = control("AU-5")
    assert result.status == MANUAL and "acknowledges nothing" in result.evidence[-1]


# --- IP-3 -----------------------------------------------------------------------------------------
def audit_result(
    path: Path, *, status: str = "clean", age_days: int = 0, source: str | None = "https://mirror/"
) -> Path:
    data = {
        "checked_at": (datetime.now(UTC) - timedelta(days=age_days)).isoformat(),
        "status": status,
        "packages": 61,
        "findings": [] if status == "clean" else [{"id": "X", "package": "y", "version": "1"}],
        "accepted": [],
        "unverified": [],
    }
    if source:
        data["vulnerability_service"] = source
    path.write_text(json.dumps(data))
    return path


def test_ip3_is_manual_without_a_scheduled_result_and_passes_with_a_fresh_clean_one(settings, tmp_path):
    settings.DEPENDENCY_AUDIT_RESULT = tmp_path / "absent.json"
    assert control("IP-3").status == MANUAL
    settings.DEPENDENCY_AUDIT_RESULT = audit_result(tmp_path / "r.json")
    assert control("IP-3").status == PASS
    settings.DEPENDENCY_AUDIT_RESULT = audit_result(tmp_path / "r.json", source=None)
    assert control("IP-3").status == MANUAL  # which advisory database? the assessor must see the run
    settings.DEPENDENCY_AUDIT_RESULT = audit_result(tmp_path / "r.json", status="findings")
    assert control("IP-3").status == FAIL
    settings.DEPENDENCY_AUDIT_RESULT = audit_result(tmp_path / "r.json", age_days=30)
    assert control("IP-3").status == FAIL


def test_ip3_default_location_is_under_data_dir(settings):
    from django.conf import settings as live

    assert Path(live.DEPENDENCY_AUDIT_RESULT).parent == Path(live.DATA_DIR)


# --- BR-1 -----------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)  # the backup reads the database from its own connection
def test_br1_verifies_the_last_backup_and_fails_when_it_is_damaged(settings, tmp_path):
    from compliance.backup import backup_create

    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    assert control("BR-1").status == FAIL  # never backed up
    backup = backup_create(output=tmp_path / "backup")
    audit_record(event_type=EventType.BACKUP, object_type="backup", object_repr=str(backup.path))
    result = control("BR-1")
    assert result.evidence[1].state == PASS and "every checksum verified" in result.evidence[1]
    assert result.status == FAIL and "last restore performed and recorded: never" in result.evidence[2]
    audit_record(event_type=EventType.RESTORE, object_type="backup", object_repr=str(backup.path))
    assert control("BR-1").status == PASS
    with (backup.path / "data.tar").open("ab") as archive:
        archive.write(b"tampered")
    result = control("BR-1")
    assert result.status == FAIL and "does not match its checksum" in result.evidence[1]
    shutil.rmtree(backup.path)
    assert control("BR-1").evidence[1].state == MANUAL  # copied elsewhere: the assessor checks it there


# --- BR-2, BR-3: a real streaming replica, real heartbeats ------------------------------------------
@pytest.fixture
def standby():
    with standby_running() as port:
        yield port


@contextlib.contextmanager
def standby_running():
    """A streaming replica of the test cluster, made with pg_basebackup, on its own port."""
    url = require_postgresql("a streaming replica")
    from throwaway_services import _as_postgres_user, _pg_bin, free_port, wait_for_port

    parts = urlsplit(url)
    prefix, uid, gid = _as_postgres_user()
    root = Path(tempfile.mkdtemp(prefix="platform-standby-"))
    if uid is not None:
        os.chown(root, uid, gid)
    data, port = root / "data", free_port()
    subprocess.run(
        [*prefix, _pg_bin("pg_basebackup"), "-h", parts.hostname, "-p", str(parts.port), "-U", "postgres"]
        + ["-D", str(data), "-R", "-X", "stream", "--no-sync", "--checkpoint=fast"],
        check=True,
        capture_output=True,
    )
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} -c fsync=off"
    # max_connections as the primary's (a hot standby needs at least as many); cluster_name is the
    # walreceiver's application_name on the primary.
    options += " -c max_connections=200 -c cluster_name=report-standby"
    subprocess.run(
        [*prefix, _pg_bin("pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o", options, "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        subprocess.run(
            [*prefix, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


def streaming() -> bool:
    with connection.cursor() as cursor:  # outside the test's snapshot: pg_stat_* are live views
        cursor.execute("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_br2_and_br3_pass_only_with_what_is_seen_live(settings, standby):
    from compliance.report_heartbeat import heartbeat_write

    settings.APP_PROCESSES = 2
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [require_service_url("TEST_REDIS_URL", "Redis")]},
        }
    }
    wait_until(streaming, timeout=60, message="the standby never streamed")
    br2 = control("BR-2")
    assert br2.status == PASS and "report-standby at 127.0.0.1" in br2.evidence[0]
    br3 = control("BR-3")
    assert br3.status == FAIL  # a replica and Redis, but no second app process has reported
    assert states(br3)[0] == PASS and "0 (APP_PROCESSES=2)" in br3.evidence[1]
    heartbeat_write(process_id="node-a:1:aaaa", hostname="node-a")
    heartbeat_write(process_id="node-a:2:bbbb", hostname="node-a")
    assert control("BR-3").status == MANUAL  # two processes, one host: is there a second node?
    heartbeat_write(process_id="node-b:3:cccc", hostname="node-b")
    br3 = control("BR-3")
    assert br3.status == PASS, br3.evidence
    heartbeat_write(process_id="node-b:3:cccc", hostname="node-b", now=timezone.now() - timedelta(minutes=10))
    heartbeat_write(process_id="node-a:2:bbbb", hostname="node-a", now=timezone.now() - timedelta(minutes=10))
    assert control("BR-3").status == FAIL  # their heartbeats went stale: processes are down


def test_a_fresh_single_process_install_cannot_pass_br2_or_br3():
    from compliance.report_heartbeat import heartbeat_write

    heartbeat_write()  # this process, alone, with the test profile's in-memory channel layer
    results = {r.control: r for r in compliance_report_build().results}
    assert results["BR-2"].status == FAIL
    assert results["BR-3"].status == FAIL


def test_each_serving_process_writes_its_heartbeat(tmp_path):
    """Two real server processes (manage.py serve) of one installation each report themselves."""
    url = require_postgresql("two server processes on one database")
    from tests.support.live_server import LiveServer

    first = LiveServer(tmp_path / "one", env={"HEARTBEAT_SECONDS": "1"}).start()
    try:
        second = LiveServer(
            tmp_path / "two", env={"HEARTBEAT_SECONDS": "1"}, database_url=first.env["DATABASE_URL"]
        ).start()
        try:
            count = "from compliance.report_heartbeat import heartbeats_recent; print(heartbeats_recent().count())"
            wait_until(lambda: first.shell(count) == "2", timeout=60, interval=0.5, message="two heartbeats")
            report = first.shell(
                "from compliance.report import compliance_report_build; "
                "r = next(r for r in compliance_report_build().results if r.control == 'BR-3'); print(r.evidence[1])"
            )
            assert report.startswith("✓ app processes that reported a heartbeat") and ": 2 (APP_PROCESSES=1)" in report
        finally:
            second.stop()
    finally:
        first.stop()
    assert url


# --- RI-2, DI-1 -------------------------------------------------------------------------------------
def png(red: int = 200) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (red, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_ri2_and_di1_sample_what_deletion_left(
    personas, tmp_asset_storage, system_context, django_capture_on_commit_callbacks
):
    from assets.services import asset_delete, asset_upload
    from assets.storage import blob_path
    from departments.tenancy import department_scope

    assert control("RI-2").status == NOT_APPLICABLE  # nothing stored, nothing deleted: no evidence to have
    assert control("DI-1").evidence[0].state == NOT_APPLICABLE
    department = personas.department_a
    with department_scope(department):
        kept = asset_upload(
            department=department, uploaded_by=personas.member, stream=iter([png()]), original_name="a.png"
        )
        gone = asset_upload(
            department=department, uploaded_by=personas.member, stream=iter([png(90)]), original_name="b.png"
        )
    di1 = control("DI-1")
    assert states(di1)[:2] == [PASS, PASS] and "2 sampled blobs" in di1.evidence[1]
    gone_blob = blob_path(gone.storage_name)
    with department_scope(department), django_capture_on_commit_callbacks(execute=True):
        asset_delete(asset=gone, acting_user=personas.member)  # the blob goes once the deletion commits
    wait_until(lambda: not gone_blob.exists(), message="the deleted file's blob stayed")
    ri2 = control("RI-2")
    assert ri2.status == PASS, ri2.evidence
    assert any(line.startswith("✓ 1 deleted files sampled: rows left none") for line in ri2.evidence)
    # a deletion recorded but not carried out: its row is a residue
    audit_record(event_type=EventType.ASSET_DELETE, obj=kept, department=department)
    ri2 = control("RI-2")
    assert ri2.status == FAIL
    assert any(line.startswith("✗ 2 deleted files sampled") and str(kept.pk) in line for line in ri2.evidence)
    # a blob no file refers to, older than the grace period: a residue too
    orphan = blob_path("f" * 32)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"MMA\x01" + os.urandom(60))
    old = (timezone.now() - timedelta(hours=1)).timestamp()
    os.utime(orphan, (old, old))
    assert "f" * 32 in control("RI-2").evidence[-1]
    # a stored blob that is not in the authenticated format fails DI-1
    blob_path(kept.storage_name).write_bytes(base64.b64encode(b"plaintext"))
    assert control("DI-1").evidence[1].state == FAIL


@pytest.mark.django_db(transaction=True)  # the chat services own their (durable) transactions
def test_ri2_a_deleted_conversation_leaves_no_row_or_message(personas, tmp_asset_storage):
    from inference.chat.models import Conversation
    from inference.chat.services import conversation_create, conversation_delete

    member = personas.member
    conversation = conversation_create(department=personas.department_a, owner=member, acting_user=member)
    conversation_delete(conversation=conversation, acting_user=member)
    ri2 = control("RI-2")
    assert ri2.status == PASS
    assert "✓ 1 deleted conversations sampled: rows left none; messages left 0" in ri2.evidence
    assert not Conversation._base_manager.filter(pk=conversation.pk).exists()


def test_ri2_counts_readable_previews_left_in_the_trail(personas):
    """An entry written before previews were sealed (as the previous release wrote it, not through
    today's audit_record) keeps its preview readable: a residue RI-2 names."""
    from compliance.models import AuditPending
    from compliance.sealing import seal_pending

    member = personas.member
    from inference.chat.services import conversation_create

    conversation_create(department=personas.department_a, owner=member, acting_user=member)
    AuditPending(
        timestamp=timezone.now(),
        actor_type="user",
        actor_id=str(member.pk),
        actor_name=member.username,
        event_type=EventType.INFERENCE,
        outcome="success",
        object_type="inference.conversation",
        object_id="1",
        details={"prompt_preview": "发票号 12345678 的金额是多少"},
        format_version=4,
    ).save(_from_audit_record=True)
    seal_pending()
    ri2 = control("RI-2")
    assert ri2.status == FAIL
    assert any(
        line.startswith("✗ audit entries still holding a readable preview") and ": 1 (1 prompt" in line
        for line in ri2.evidence
    )


def test_au5_over_tls_verifies_the_siem_certificate(settings, tls_pair, django_capture_on_commit_callbacks):  # noqa: F811
    import ssl

    cert, key = tls_pair
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = TcpSink()
    listener.server = context.wrap_socket(listener.server, server_side=True)
    threading.Thread(target=listener._serve, daemon=True).start()
    settings.AUDIT_SYSLOG_ADDRESS = f"tls://localhost:{listener.port}"
    settings.TLS_CA_BUNDLE = str(cert)
    with django_capture_on_commit_callbacks(execute=True):
        entry = audit_record(event_type=EventType.LOGIN)
    wait_until(lambda: b"\n" in listener.received, message="the TLS listener received no entry")
    result = control("AU-5")
    assert result.status == PASS and "(tls): last entry accepted" in result.evidence[-1]
    assert f"(#{entry.sequence})" in result.evidence[-1]


def test_heartbeats_of_processes_long_gone_are_forgotten():
    from compliance.models import ProcessHeartbeat
    from compliance.report_heartbeat import heartbeat_write, heartbeats_prune

    heartbeat_write(process_id="old:1:dead", hostname="old", now=timezone.now() - timedelta(days=2))
    heartbeat_write(process_id="new:2:live", hostname="new")
    assert heartbeats_prune() == 1
    assert list(ProcessHeartbeat.objects.values_list("process_id", flat=True)) == ["new:2:live"]


def test_pi1_keeps_only_the_directory_attributes_the_business_needs(settings):
    settings.LDAP_ENABLED = False
    assert control("PI-1").status == NOT_APPLICABLE
    settings.LDAP_ENABLED = True
    settings.AUTH_LDAP_USER_ATTR_MAP = {"first_name": "givenName", "email": "mail"}
    assert control("PI-1").status == PASS
    settings.AUTH_LDAP_USER_ATTR_MAP = {"first_name": "givenName", "mobile": "mobile"}
    result = control("PI-1")
    assert result.status == FAIL and "beyond the business need: mobile" in result.evidence[0]


def test_sm2_an_active_model_version_must_be_approved(make_user):
    from inference.registry.models import ActivationKind, ModelActivation, ModelVersion

    make_user("sec-officer", admin_role=AdminRole.SECURITY)
    assert control("SM-2").evidence[-1].state == NOT_APPLICABLE  # no model registered yet
    approved = ModelVersion.objects.create(
        manifest_sha256="a" * 64,
        name="qwen-approved",
        path="/models/a",
        family="qwen2_5_vl",
        registered_by_name="system",
        approved_by_name="sec-officer",
        approved_at=timezone.now(),
    )
    ModelActivation.objects.create(version=approved, kind=ActivationKind.ACTIVATION, activated_by_name="sys")
    sm2 = control("SM-2")
    assert sm2.status == PASS and "active: qwen-approved (approved by sec-officer)" in sm2.evidence[-1]
    unapproved = ModelVersion.objects.create(
        manifest_sha256="b" * 64, name="qwen-unreviewed", path="/models/b", family="qwen2_5_vl", registered_by_name="x"
    )
    ModelActivation.objects.create(version=unapproved, kind=ActivationKind.ACTIVATION, activated_by_name="sys")
    sm2 = control("SM-2")
    assert sm2.status == FAIL and "qwen-unreviewed" in sm2.evidence[-1]


def _dependency_audit_script():
    import runpy

    return runpy.run_path(str(Path(__file__).resolve().parents[2] / "scripts" / "dependency_audit.py"))


def test_ip3_passes_on_what_the_audit_script_itself_writes(settings, tmp_path):
    """The script's own result (pip-audit's JSON report shape) is what the report accepts: it
    names its service, a clean run passes, an unanswered package is not clean."""
    script = _dependency_audit_script()
    clean = {"dependencies": [{"name": "Django", "version": "5.2.19", "vulns": []}]}
    result = tmp_path / "dependency-audit.json"
    result.write_text(json.dumps(script["summarise"](clean, {}, service="osv")))
    settings.DEPENDENCY_AUDIT_RESULT = result
    assert control("IP-3").status == PASS
    unanswered = {"dependencies": [{"name": "torch", "version": "2.14.1", "skip_reason": "service unreachable"}]}
    result.write_text(json.dumps(script["summarise"](unanswered, {}, service="pypi")))
    assert control("IP-3").status == FAIL
    found = {
        "dependencies": [{"name": "pillow", "version": "13.0.0", "vulns": [{"id": "PYSEC-1", "fix_versions": []}]}]
    }
    result.write_text(json.dumps(script["summarise"](found, {("PYSEC-1", "pillow"): "not reachable"}, service="pypi")))
    assert control("IP-3").status == PASS  # accepted with a reason
    result.write_text(json.dumps(script["summarise"](found, {}, service="pypi")))
    assert control("IP-3").status == FAIL


def test_ip3_the_scheduled_unit_writes_where_the_report_reads():
    """deploy/systemd runs the script daily with the deployment's environment; the script's default
    output for that environment is the setting's default (DATA_DIR/dependency-audit.json)."""
    import configparser

    systemd = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
    timer, service = configparser.ConfigParser(), configparser.ConfigParser()
    timer.read(systemd / "platform-dependency-audit.timer")
    service.read(systemd / "platform-dependency-audit.service")
    assert timer["Timer"]["OnCalendar"] and timer["Install"]["WantedBy"] == "timers.target"
    assert "Unit" not in timer["Timer"]  # so it starts the service of its own name
    run = service["Service"]
    assert run["ExecStart"].split()[1:] == ["scripts/dependency_audit.py"]
    purge = configparser.ConfigParser()
    purge.read(systemd / "platform-purge-expired.service")
    for key in ("User", "WorkingDirectory", "EnvironmentFile"):
        assert run[key] == purge["Service"][key]  # the same installation and settings as the others
    assert run["ReadWritePaths"] == "/var/lib/platform"
    script = _dependency_audit_script()
    data_dir = "/var/lib/platform"
    assert script["default_output"]({"DATA_DIR": data_dir}) == Path(data_dir) / "dependency-audit.json"
    assert script["default_output"]({"DATA_DIR": data_dir, "DEPENDENCY_AUDIT_RESULT": "/x/r.json"}) == Path("/x/r.json")
