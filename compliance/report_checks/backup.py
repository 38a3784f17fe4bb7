"""The compliance report's checks: 数据备份恢复 backup and recovery (BR-1..3)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext_noop as _

from compliance.report import Evidence, Term, control, line, manual
from compliance.report_checks.live import (
    BACKUP_MAX_AGE,
    NONE,
    last_backup,
    listing,
    replicas,
)


@control("BR-1", _("Local backup and a tested restore"))
def check_br1() -> list[Evidence]:
    from compliance.backup import BackupError, backup_verify
    from compliance.events import EventType
    from compliance.models import AuditEntry

    last = last_backup()
    evidence = [
        line(
            last is not None and timezone.now() - last["timestamp"] <= BACKUP_MAX_AGE,
            _("last backup: {time} (at most {days} days old)"),
            time=last["timestamp"].isoformat() if last else Term(_("never")),
            days=BACKUP_MAX_AGE.days,
        )
    ]
    if last:
        path = Path(last["object_repr"])
        if not path.exists():
            evidence.append(
                manual(
                    _(
                        "backup {path} is not reachable from this host: check its checksums there (backup_restore "
                        "verifies them before restoring)"
                    ),
                    path=str(path),
                )
            )
        else:
            try:
                manifest = backup_verify(path)
                files = len(manifest.get("files", {}))
                evidence.append(
                    line(
                        files > 0,
                        _("backup {path}: every checksum verified ({files} files)"),
                        path=str(path),
                        files=files,
                    )
                )
            except BackupError as exc:
                evidence.append(line(False, _("backup {path}: {error}"), path=str(path), error=str(exc)))
    restore = (
        AuditEntry.objects.filter(event_type=EventType.RESTORE, outcome="success")
        .order_by("-sequence")
        .values_list("timestamp", flat=True)
        .first()
    )
    evidence.append(
        line(
            restore is not None,
            _("last restore performed and recorded: {time}"),
            time=restore.isoformat() if restore else Term(_("never")),
        )
    )
    return evidence


@control("BR-2", _("Off-site backup"))
def check_br2() -> list[Evidence]:
    standbys = replicas()
    if standbys is None:
        evidence = [
            line(
                False,
                _("the database is {vendor}: no replica possible (PostgreSQL is required)"),
                vendor=connection.vendor,
            )
        ]
    elif standbys and all(r.state is None for r in standbys):
        evidence = [
            manual(
                _(
                    "pg_stat_replication lists {count} connections but no state is visible to this database user "
                    "(grant it pg_monitor): check the replica on the standby"
                ),
                count=len(standbys),
            )
        ]
    else:
        streaming = [r for r in standbys if r.state == "streaming"]
        evidence = [
            line(
                bool(streaming),
                _("streaming replicas of the database (pg_stat_replication): {replicas}"),
                replicas=listing(
                    f"{r.name} at {r.address} ({r.sync_state}, replay lag {r.replay_lag or 0})" for r in streaming
                )
                or NONE,
            )
        ]
        if streaming:
            return evidence
    last = last_backup()
    if last:
        evidence.append(
            manual(
                _(
                    "latest backup {path} ({time}): check that a copy is kept at another site; "
                    "a path alone does not say so"
                ),
                path=last["object_repr"],
                time=last["timestamp"].isoformat(),
            )
        )
    return evidence


@control("BR-3", _("Redundancy of the processing system"))
def check_br3() -> list[Evidence]:
    from compliance.report_heartbeat import channel_layer_backend, heartbeat_window, heartbeats_recent

    evidence = []
    backend = channel_layer_backend()
    evidence.append(_channel_layer_line(backend))
    beats = list(heartbeats_recent())
    hosts = sorted({beat.hostname for beat in beats})
    minutes = int(heartbeat_window().total_seconds() // 60) or 1
    evidence.append(
        line(
            len(beats) >= 2 and len(beats) >= settings.APP_PROCESSES,
            _(
                "app processes that reported a heartbeat in the last {minutes} min: {count} "
                "(APP_PROCESSES={declared}): {processes}"
            ),
            minutes=minutes,
            count=len(beats),
            declared=settings.APP_PROCESSES,
            processes=listing(f"{b.hostname}:{b.pid}" for b in beats) or NONE,
        )
    )
    if len(hosts) == 1 and len(beats) >= 2:
        evidence.append(
            manual(
                _("every live app process runs on {host}: check that a second node takes over when it fails"),
                host=hosts[0],
            )
        )
    elif len(hosts) >= 2:
        evidence.append(
            line(len(hosts) >= 2, _("app processes on {count} hosts: {hosts}"), count=len(hosts), hosts=listing(hosts))
        )
    standbys = replicas()
    streaming = [r for r in standbys or [] if r.state == "streaming"]
    evidence.append(
        line(
            bool(streaming),
            _("database replicas streaming: {replicas}"),
            replicas=listing(f"{r.name} at {r.address}" for r in streaming) or NONE,
        )
    )
    return evidence


def _channel_layer_line(backend: str) -> Evidence:
    if backend != "RedisChannelLayer":
        return line(False, _("channel layer {backend}: one process only (set REDIS_URL)"), backend=backend)
    try:
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        channel = async_to_sync(layer.new_channel)("compliance-report.")
        async_to_sync(layer.send)(channel, {"type": "compliance.probe"})
        received = async_to_sync(layer.receive)(channel)
        ok = received.get("type") == "compliance.probe"
        return line(
            ok, _("channel layer {backend}: a message sent through Redis came back: {ok}"), backend=backend, ok=ok
        )
    except Exception as exc:  # Redis away: the layer that spans processes is not working
        return line(False, _("channel layer {backend}: Redis did not answer: {error}"), backend=backend, error=str(exc))
