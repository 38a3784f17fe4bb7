"""Verifying the chain from the auditor console: ``audit_chain_verify`` in a background thread,
its run recorded in a database row so that any process can show its progress and result.

The audit administrator starts a run (``verify_run_start``); the request returns at once with
the run's row. A daemon thread of the process that accepted the request runs the verification
and writes its outcome into the row; every process reads the row, so the progress and result
pages work behind any number of app processes. Starting a run, its outcome and every look at
its page are audited (``audit.view``, ``details.view = "verify"``).

The row's model lives in a registry of its own (``RUN_APPS``), not in ``compliance.models``: it
is an operational record, not part of the trail, and its table is created by migration 0011
without entering the project's migration state (so this module is imported only by the console).

Progress is the run's state (queued, running, finished) with the chain length it set out to
verify, the last entry checked so far and the time it has taken: while a run verifies, a
ticker thread writes ``heartbeat_at`` and the sequence number ``audit_chain_verify`` last
reported (its ``progress`` hook) into ``last_sequence``, which the outcome then sets to the last
entry verified, every ``HEARTBEAT`` seconds. A run
whose process died (killed, stopped, crashed) stops beating: once its last sign of life (the
heartbeat, else its start, else its request) is older than ``RUN_STALE`` it is shown as
interrupted and a new run may start — however long a healthy run of a long chain takes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import timedelta

from django.apps.registry import Apps
from django.db import connection, connections, models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from compliance.context import RequestContext, current_request_context, request_context
from compliance.events import EventType, Outcome
from compliance.models import AuditChainHead
from compliance.services import audit_record
from compliance.verification import audit_chain_verify

logger = logging.getLogger(__name__)

RUN_APPS = Apps(installed_apps=())
HEARTBEAT = 10.0  # seconds between a running run's signs of life
RUN_STALE = timedelta(seconds=90)  # no sign of life for this long: its process is gone
TABLE = "compliance_auditverifyrun"
# Serialises starts across processes (PostgreSQL advisory lock, held to the end of the start's
# transaction), so two auditors clicking at once get one run. SQLite serialises writers anyway.
START_LOCK = 0x61756476  # "audv"


class RunState(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", _("Finished")
    FAILED = "failed", _("Could not run")


class AuditVerifyRun(models.Model):
    """One verification of the chain started from the console."""

    requested_by_id = models.CharField(max_length=64)
    requested_by_name = models.CharField(max_length=150)
    requested_at = models.DateTimeField()
    request_id = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=16, default=RunState.QUEUED)
    process = models.CharField(max_length=255, blank=True)  # host:pid of the thread running it
    head_sequence = models.BigIntegerField(default=0)  # the chain's length when it was started
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    ok = models.BooleanField(null=True)
    break_kind = models.CharField(max_length=32, blank=True)
    break_sequence = models.BigIntegerField(null=True)
    first_sequence = models.BigIntegerField(null=True)
    last_sequence = models.BigIntegerField(null=True)
    entries = models.BigIntegerField(default=0)
    checkpoints_matched = models.IntegerField(default=0)
    backdated_count = models.IntegerField(default=0)
    message = models.TextField(blank=True)
    warnings = models.JSONField(default=list)
    heartbeat_at = models.DateTimeField(null=True)  # the ticker's last write while running (0012)

    class Meta:
        apps = RUN_APPS
        app_label = "compliance"
        db_table = TABLE

    def __str__(self) -> str:
        return f"chain verification {self.pk}"

    @property
    def finished(self) -> bool:
        return self.state in (RunState.DONE, RunState.FAILED)

    @property
    def last_sign_of_life(self):
        return self.heartbeat_at or self.started_at or self.requested_at

    @property
    def stale(self) -> bool:
        return not self.finished and timezone.now() - self.last_sign_of_life > RUN_STALE

    @property
    def progress_total(self) -> int:
        """The chain's length for the progress shown: as when the run started, or further when
        the walk has gone past it (entries written since, the run's own start among them)."""
        return max(self.head_sequence, self.last_sequence or 0)

    @property
    def elapsed(self) -> timedelta | None:
        if self.started_at is None:
            return None
        return (self.finished_at or timezone.now()) - self.started_at


def verify_run_active() -> AuditVerifyRun | None:
    """The run in progress, if any (one at a time is enough: each verifies the whole chain)."""
    unfinished = AuditVerifyRun.objects.filter(state__in=(RunState.QUEUED, RunState.RUNNING)).order_by("-pk")
    return next((run for run in unfinished[:5] if not run.stale), None)


def verify_run_get(*, pk: int) -> AuditVerifyRun | None:
    return AuditVerifyRun.objects.filter(pk=pk).first()


def verify_run_latest() -> AuditVerifyRun | None:
    return AuditVerifyRun.objects.order_by("-pk").first()


def verify_run_start(*, acting_user) -> tuple[AuditVerifyRun, bool]:
    """Record a run and start it once the row is committed; a run already in progress is
    returned instead (``created`` False). The start is audited in the same transaction."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [START_LOCK])
        active = verify_run_active()
        if active is not None:
            return active, False
        context = current_request_context()
        run = AuditVerifyRun.objects.create(
            requested_by_id=str(acting_user.pk),
            requested_by_name=acting_user.get_username(),
            requested_at=timezone.now(),
            request_id=context.request_id if context else "",
            head_sequence=AuditChainHead.objects.get(pk=1).sequence,
        )
        audit_record(
            event_type=EventType.AUDIT_VIEW,
            actor=acting_user,
            object_type="compliance.auditverifyrun",
            object_id=str(run.pk),
            object_repr=str(run),
            details={"view": "verify", "action": "start", "run": run.pk, "head_sequence": run.head_sequence},
        )
        transaction.on_commit(lambda: _thread_start(run.pk, acting_user, context))
    return run, True


def _thread_start(pk: int, acting_user, context: RequestContext | None) -> threading.Thread:
    thread = threading.Thread(
        target=_run_in_thread, args=(pk, acting_user, context), name=f"audit-verify-{pk}", daemon=True
    )
    thread.start()
    return thread


def _run_in_thread(pk: int, acting_user, context: RequestContext | None) -> None:
    try:
        with request_context(context or RequestContext(request_id=f"audit-verify-{pk}")):
            verify_run_execute(pk, acting_user=acting_user)
    except Exception:
        logger.exception("chain verification %s crashed", pk)
    finally:
        connections.close_all()


def _beat(pk: int, stop: threading.Event, checked: list[int]) -> None:
    """Write the run's heartbeat, with the last entry checked so far (``checked[0]``, which the
    verification updates), until ``stop`` (its own database connection, closed at the end)."""
    try:
        while True:
            AuditVerifyRun.objects.filter(pk=pk, state=RunState.RUNNING).update(
                heartbeat_at=timezone.now(), last_sequence=checked[0]
            )
            if stop.wait(HEARTBEAT):
                return
    except Exception:
        logger.exception("chain verification %s: heartbeat failed", pk)
    finally:
        connection.close()


def verify_run_execute(pk: int, *, acting_user) -> AuditVerifyRun:
    """Run the verification for row ``pk`` and record its outcome (the thread; audited)."""
    now = timezone.now()
    claimed = AuditVerifyRun.objects.filter(pk=pk, state=RunState.QUEUED).update(
        state=RunState.RUNNING, started_at=now, heartbeat_at=now, process=f"{socket.gethostname()}:{os.getpid()}"
    )
    run = AuditVerifyRun.objects.get(pk=pk)
    if not claimed:  # another thread has it already
        return run
    stop = threading.Event()
    checked = [0]  # the last entry checked so far: written by the verification, read by the ticker

    def progress(last_checked: int) -> None:
        checked[0] = last_checked

    ticker = threading.Thread(target=_beat, args=(pk, stop, checked), name=f"audit-verify-{pk}-heartbeat", daemon=True)
    ticker.start()
    try:
        result = audit_chain_verify(progress)
    except Exception as error:  # audit_chain_verify reports breaks; this is anything else
        run.state, run.ok, run.message = RunState.FAILED, None, f"{type(error).__name__}: {error}"[:2000]
    else:
        run.state = RunState.DONE
        run.ok = result.ok  # back-dated entries (audit_verify's exit 3) are counted apart
        run.break_kind = str(result.break_kind or "")
        run.break_sequence = result.break_sequence
        run.first_sequence, run.last_sequence = result.first_sequence, result.last_sequence
        run.entries, run.checkpoints_matched = result.entries, result.checkpoints_matched
        run.backdated_count = result.backdated_count
        run.message, run.warnings = result.message, list(result.warnings)
    stop.set()
    ticker.join()
    run.finished_at = timezone.now()
    run.heartbeat_at = run.finished_at
    with transaction.atomic():
        run.save()
        audit_record(
            event_type=EventType.AUDIT_VIEW,
            outcome=Outcome.SUCCESS if run.state == RunState.DONE else Outcome.FAILURE,
            actor=acting_user,
            object_type="compliance.auditverifyrun",
            object_id=str(run.pk),
            object_repr=str(run),
            details={
                "view": "verify",
                "action": "finish",
                "run": run.pk,
                "state": run.state,
                "ok": run.ok,
                "break_kind": run.break_kind,
                "break_sequence": run.break_sequence,
                "entries": run.entries,
                "backdated": run.backdated_count,
            },
        )
    return run
