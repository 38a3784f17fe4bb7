"""Live probes for the compliance report: each looks at the running system, never at a file
that describes it.

- ``tls_probe``: handshakes with PUBLIC_URL per TLS version and one HTTPS request (IA-3, DC-1);
- ``audit_failure_probe``: an audited action whose audit write the database refuses (AU-4);
- ``replicas``: streaming replicas seen by the primary in ``pg_stat_replication`` (BR-2, BR-3);
- ``residual_sample``: deleted files and conversations that left rows or blobs behind (RI-2).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models.signals import post_save
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_noop

PROBE_TIMEOUT_SECONDS = 5
HSTS_MIN_SECONDS = 31536000  # one year, what deploy/nginx sends


# --- TLS (IA-3, DC-1) ----------------------------------------------------------------------------
@dataclass
class Handshake:
    version: str
    accepted: bool | None  # None: this host's TLS library could not offer the version
    detail: str


@dataclass
class TlsProbe:
    url: str
    problem: str = ""  # why nothing could be probed (a setting missing or malformed), in English
    problem_template: str = ""  # the same as a message id and its values, for the report's languages
    problem_params: dict = field(default_factory=dict)

    def refuse(self, template: str, **params) -> None:
        self.problem_template, self.problem_params = template, params
        self.problem = template.format(**params)

    handshakes: dict[str, Handshake] = field(default_factory=dict)
    hsts: str | None = None
    cookies: list[str] = field(default_factory=list)
    response_status: int | None = None
    response_problem: str = ""

    def accepted(self, version: str) -> bool | None:
        handshake = self.handshakes.get(version)
        return handshake.accepted if handshake else None


_VERSIONS = {
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
}
with warnings.catch_warnings():  # the old versions are deprecated: that is what is probed
    warnings.simplefilter("ignore", DeprecationWarning)
    _VERSIONS.update({"TLSv1.1": ssl.TLSVersion.TLSv1_1, "TLSv1": ssl.TLSVersion.TLSv1})
# Errors OpenSSL raises before anything is sent: the client cannot offer the version at all.
_LOCAL_REFUSALS = ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE", "NO_SUITABLE_SIGNATURE_ALGORITHM")


def _context(version: str, *, verify: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        if settings.TLS_CA_BUNDLE:
            context.load_verify_locations(cafile=settings.TLS_CA_BUNDLE)
        else:
            context.load_default_certs()
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = _VERSIONS[version]
    if _VERSIONS[version] < ssl.TLSVersion.TLSv1_2:
        # OpenSSL 3 will not offer the old versions at its default security level: lower it,
        # so that a server still accepting them is found out.
        context.set_ciphers("ALL:@SECLEVEL=0")
    return context


def _handshake(host: str, port: int, version: str) -> Handshake:
    verify = _VERSIONS[version] >= ssl.TLSVersion.TLSv1_2
    try:
        context = _context(version, verify=verify)
    except ssl.SSLError as exc:
        return Handshake(version, None, f"this host cannot offer {version}: {exc.reason or exc}")
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_SECONDS) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                certificate = tls.getpeercert() or {}
                subject = dict(item[0] for item in certificate.get("subject", ())).get("commonName", "")
                expires = certificate.get("notAfter", "")
                described = f"{tls.version()} {tls.cipher()[0]}"
                if verify:
                    described += f", certificate {subject or '?'} verified, valid until {expires}"
                return Handshake(version, True, described)
    except ssl.SSLCertVerificationError as exc:
        bundle = f"TLS_CA_BUNDLE={settings.TLS_CA_BUNDLE}" if settings.TLS_CA_BUNDLE else "the system trust store"
        return Handshake(version, False, f"certificate not verified against {bundle}: {exc.verify_message or exc}")
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if any(local in str(reason) for local in _LOCAL_REFUSALS):
            return Handshake(version, None, f"this host cannot offer {version}: {reason}")
        return Handshake(version, False, f"refused ({reason})")
    except OSError as exc:  # reset or closed by the server during the handshake counts as refused
        return Handshake(version, False, f"refused ({type(exc).__name__}: {exc})")


def _https_response(probe: TlsProbe, host: str, port: int, path: str) -> None:
    try:
        context = _context("TLSv1.3", verify=True)
        client = http.client.HTTPSConnection(host, port, timeout=PROBE_TIMEOUT_SECONDS, context=context)
        try:
            client.request("GET", path, headers={"User-Agent": "platform-compliance-report"})
            response = client.getresponse()
            response.read()
            probe.response_status = response.status
            probe.hsts = response.getheader("Strict-Transport-Security")
            probe.cookies = response.msg.get_all("Set-Cookie") or []
        finally:
            client.close()
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        probe.response_problem = f"{type(exc).__name__}: {exc}"


def tls_probe() -> TlsProbe:
    """Probe PUBLIC_URL live: a handshake per version, then GET of the sign-in page over TLS 1.3."""
    url = settings.PUBLIC_URL or ""
    probe = TlsProbe(url=url)
    if not url:
        probe.refuse(gettext_noop("PUBLIC_URL is not set: the public address cannot be probed"))
        return probe
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        probe.refuse(gettext_noop("PUBLIC_URL={url!r} is not an https:// address"), url=url)
        return probe
    if settings.TLS_CA_BUNDLE and not Path(settings.TLS_CA_BUNDLE).is_file():
        probe.refuse(gettext_noop("TLS_CA_BUNDLE={path!r} is not a readable file"), path=settings.TLS_CA_BUNDLE)
        return probe
    host, port = parts.hostname, parts.port or 443
    for version in _VERSIONS:
        probe.handshakes[version] = _handshake(host, port, version)
    if probe.accepted("TLSv1.3"):
        _https_response(probe, host, port, urlsplit(urljoin(url, reverse("login"))).path)
    return probe


def hsts_max_age(header: str | None) -> int | None:
    for directive in (header or "").split(";"):
        name, _, value = directive.strip().partition("=")
        if name.lower() == "max-age" and value.strip().strip('"').isdigit():
            return int(value.strip().strip('"'))
    return None


def cookie_flags(cookie: str) -> tuple[str, set[str]]:
    """(name, lower-cased attribute names) of one Set-Cookie header."""
    name = cookie.split("=", 1)[0].strip()
    attributes = {part.strip().split("=", 1)[0].lower() for part in cookie.split(";")[1:]}
    return name, attributes


# --- AU-4 ------------------------------------------------------------------------------------------
# Longer than the audit tables' request id column (varchar(64)): the database refuses the entry.
AU4_REQUEST_ID = "compliance-report-au4-probe-" + "0" * 64


@dataclass
class AuditFailureProbe:
    vendor: str
    action_written: bool = False  # the action's row existed before its audit entry was written
    refused: str = ""  # the database's refusal of the audit entry, if it refused
    action_left: bool = False  # the action's row is still there after the failed write
    unexpected: str = ""


class _ProbeRollback(Exception):
    pass


def audit_failure_probe() -> AuditFailureProbe:
    """Create a department through its real service, with an audit entry the database refuses,
    inside a savepoint that is always rolled back; report whether the department survived."""
    from compliance.context import RequestContext, request_context
    from departments.models import Department
    from departments.services import department_create

    probe = AuditFailureProbe(vendor=connection.vendor)
    slug = f"au4-probe-{uuid.uuid4().hex[:12]}"

    def written(sender, instance, created, **kwargs) -> None:
        if created and instance.slug == slug:
            probe.action_written = True

    post_save.connect(written, sender=Department, weak=False, dispatch_uid=f"au4-probe-{slug}")
    try:
        with transaction.atomic():
            try:
                with transaction.atomic(), request_context(RequestContext(request_id=AU4_REQUEST_ID)):
                    department_create(slug=slug, name="AU-4 probe", acting_user="system")
            except DatabaseError as exc:
                cause = exc.__cause__
                state = getattr(cause, "sqlstate", None) or getattr(getattr(cause, "diag", None), "sqlstate", None)
                probe.refused = f"{type(exc).__name__} (SQLSTATE {state}): {str(exc).strip().splitlines()[0]}"
            else:
                probe.unexpected = "the database accepted the oversized audit entry"
            probe.action_left = Department._base_manager.filter(slug=slug).exists()
            raise _ProbeRollback
    except _ProbeRollback:
        pass
    finally:
        post_save.disconnect(sender=Department, dispatch_uid=f"au4-probe-{slug}")
    return probe


# --- replicas (BR-2, BR-3) ----------------------------------------------------------------------
@dataclass
class Replica:
    name: str
    address: str
    state: str | None
    sync_state: str | None
    replay_lag: str | None


def replicas() -> list[Replica] | None:
    """Standbys connected to this primary, or None where the database cannot have any (SQLite)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT application_name, client_addr::text, state, sync_state, replay_lag::text "
            "FROM pg_stat_replication ORDER BY application_name"
        )
        return [Replica(name or "?", address or "?", state, sync, lag) for name, address, state, sync, lag in cursor]


# --- RI-2 --------------------------------------------------------------------------------------------
RESIDUAL_SAMPLE = 200  # deletion entries looked at, newest first
BLOB_GRACE_SECONDS = 600  # a blob is removed after its deletion commits; give that time


@dataclass
class ResidualSample:
    assets: int = 0
    conversations: int = 0
    asset_rows: list[str] = field(default_factory=list)
    conversation_rows: list[str] = field(default_factory=list)
    message_rows: int = 0
    extraction_rows: list[str] = field(default_factory=list)
    orphan_blobs: list[str] = field(default_factory=list)
    blobs_on_disk: int = 0


def _keys(model, object_ids: set[str]) -> list:
    """The audit trail's object ids as the model's primary keys (ids of another form are skipped)."""
    from django.core.exceptions import ValidationError

    keys = []
    for object_id in object_ids:
        try:
            keys.append(model._meta.pk.to_python(object_id))
        except (ValidationError, ValueError):
            continue
    return keys


def residual_sample() -> ResidualSample:
    """Take the newest deletions in the audit trail (files and conversations, by a person or by
    retention) and look for anything of them still stored."""
    from assets.models import Asset
    from assets.storage import blob_names_on_disk, blob_path
    from compliance.events import EventType
    from compliance.models import AuditEntry
    from inference.chat.models import Conversation, ConversationMessage
    from inference.extraction.models import Extraction

    sample = ResidualSample()
    deletions = (
        AuditEntry.objects.filter(
            event_type__in=[EventType.ASSET_DELETE, EventType.CONVERSATION_DELETE], outcome="success"
        )
        .order_by("-sequence")
        .values_list("event_type", "object_id")[:RESIDUAL_SAMPLE]
    )
    asset_ids, conversation_ids = set(), set()
    for event_type, object_id in deletions:
        (asset_ids if event_type == EventType.ASSET_DELETE else conversation_ids).add(object_id)
    sample.assets, sample.conversations = len(asset_ids), len(conversation_ids)
    asset_keys, conversation_keys = _keys(Asset, asset_ids), _keys(Conversation, conversation_ids)
    sample.asset_rows = sorted(
        str(pk) for pk in Asset._base_manager.filter(pk__in=asset_keys).values_list("pk", flat=True)
    )
    sample.conversation_rows = sorted(
        str(pk) for pk in Conversation._base_manager.filter(pk__in=conversation_keys).values_list("pk", flat=True)
    )
    sample.message_rows = ConversationMessage._base_manager.filter(conversation_id__in=conversation_keys).count()
    sample.extraction_rows = sorted(
        str(pk) for pk in Extraction._base_manager.filter(asset_ref__in=list(asset_ids)).values_list("pk", flat=True)
    )
    referenced = set(Asset._base_manager.values_list("storage_name", flat=True))
    now = timezone.now().timestamp()
    on_disk = blob_names_on_disk()
    sample.blobs_on_disk = len(on_disk)
    for name in sorted(on_disk - referenced):
        try:
            age = now - blob_path(name).stat().st_mtime
        except OSError:
            continue  # removed while we looked
        if age > BLOB_GRACE_SECONDS:
            sample.orphan_blobs.append(name)
    return sample
