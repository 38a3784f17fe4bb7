"""Verifying the chain from the auditor console: a background run recorded in its
own row, its progress and result page, audited, refused to every other role.

The runs start a thread with its own database connection, which sees only committed rows:
these tests are transactional and wait for the run's row with a deadline."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from compliance.checkpoints import checkpoint_sign
from compliance.events import EventType, Outcome
from compliance.models import AuditChainHead, AuditEntry
from compliance.services import audit_record
from compliance.verify_runs import AuditVerifyRun, RunState
from tests.compliance.conftest import raw_sql, triggers_lifted

pytestmark = pytest.mark.django_db(transaction=True)
DEADLINE_SECONDS = 60


@pytest.fixture(autouse=True)
def runs_removed():
    """The run table is outside the project's registry, so the flush between transactional
    tests does not empty it: each test leaves it as it found it."""
    yield
    AuditVerifyRun.objects.all().delete()


@pytest.fixture
def signed_chain(system_context, personas):
    for index in range(6):
        audit_record(event_type=EventType.ASSET_VIEW, department=personas.department_a, details={"index": index})
    head = AuditChainHead.objects.get()
    checkpoint_sign(sequence=head.sequence, hash=head.hash)
    return head.sequence


def finished(pk: int) -> AuditVerifyRun:
    from tests.support.waiting import wait_until

    def done():
        run = AuditVerifyRun.objects.get(pk=pk)
        return run if run.finished else None

    return wait_until(done, timeout=DEADLINE_SECONDS, message=f"verification {pk} did not finish")


def start(client) -> AuditVerifyRun:
    response = client.post("/audit/verify/", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 302
    run = AuditVerifyRun.objects.order_by("-pk").first()
    assert response["Location"] == f"/audit/verify/{run.pk}/"
    return run


def verify_entries(action: str) -> list[AuditEntry]:
    return [
        entry
        for entry in AuditEntry.objects.filter(event_type=EventType.AUDIT_VIEW).order_by("sequence")
        if entry.details.get("view") == "verify" and entry.details.get("action") == action
    ]


def test_an_intact_chain_is_verified_in_the_background_and_every_step_is_audited(client, auditor, signed_chain):
    client.force_login(auditor)
    run = start(client)
    assert run.requested_by_name == "audrey" and run.head_sequence >= signed_chain
    (started,) = verify_entries("start")
    assert started.actor_name == "audrey" and started.details["run"] == run.pk
    # While it runs (or queued), the page shows the state and reloads itself.
    page = client.get(f"/audit/verify/{run.pk}/", HTTP_ACCEPT_LANGUAGE="en")
    assert page.status_code == 200
    if not AuditVerifyRun.objects.get(pk=run.pk).finished and not page.context["run"].finished:
        assert 'http-equiv="refresh"' in page.content.decode()
    run = finished(run.pk)
    assert run.state == RunState.DONE and run.ok is True and run.entries >= signed_chain
    assert run.checkpoints_matched >= 1 and run.process
    (outcome,) = verify_entries("finish")
    assert outcome.outcome == Outcome.SUCCESS and outcome.actor_name == "audrey"
    assert outcome.details["ok"] is True and outcome.details["run"] == run.pk
    body = client.get(f"/audit/verify/{run.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "intact" in body and 'http-equiv="refresh"' not in body
    viewed = [e for e in AuditEntry.objects.filter(event_type=EventType.AUDIT_VIEW) if e.object_id == str(run.pk)]
    looks = [e.details["state"] for e in viewed if "action" not in e.details]
    # Each state this session saw is recorded once (the page's own reloads are not new looks).
    assert looks[-1] == RunState.DONE and len(looks) == len(set(looks)), looks
    client.get(f"/audit/verify/{run.pk}/")
    client.get(f"/audit/verify/{run.pk}/")
    again = [e for e in AuditEntry.objects.filter(event_type=EventType.AUDIT_VIEW) if e.object_id == str(run.pk)]
    assert len(again) == len(viewed)
    # Another session's look is its own.
    other = type(client)()
    other.force_login(auditor)
    other.get(f"/audit/verify/{run.pk}/")
    assert len(
        [e for e in AuditEntry.objects.filter(event_type=EventType.AUDIT_VIEW) if e.object_id == str(run.pk)]
    ) == (len(viewed) + 1)
    # The console names the latest run.
    assert f"/audit/verify/{run.pk}/" in client.get("/audit/").content.decode()


def test_a_tampered_row_is_reported_as_a_break(client, auditor, signed_chain):
    with triggers_lifted():
        raw_sql("UPDATE compliance_auditentry SET outcome = 'failure' WHERE sequence = 4")
    client.force_login(auditor)
    run = finished(start(client).pk)
    assert (run.state, run.ok, run.break_kind, run.break_sequence) == (RunState.DONE, False, "hash_mismatch", 4)
    (outcome,) = verify_entries("finish")
    assert outcome.outcome == Outcome.SUCCESS  # the run ran; what it found is in the details
    assert (outcome.details["ok"], outcome.details["break_kind"], outcome.details["break_sequence"]) == (
        False,
        "hash_mismatch",
        4,
    )
    for language, text in (("en", "BROKEN at entry 4: hash_mismatch"), ("zh-hans", "第 4 条记录处断裂：hash_mismatch")):
        body = client.get(f"/audit/verify/{run.pk}/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
        assert text in body and 'href="/audit/entries/4/"' in body


def test_a_second_start_while_one_runs_shows_the_running_one(client, auditor, signed_chain):
    client.force_login(auditor)
    running = AuditVerifyRun.objects.create(
        requested_by_id=str(auditor.pk),
        requested_by_name="audrey",
        requested_at=timezone.now(),
        state=RunState.RUNNING,
    )
    response = client.post("/audit/verify/")
    assert response["Location"] == f"/audit/verify/{running.pk}/"
    assert AuditVerifyRun.objects.count() == 1 and not verify_entries("start")


@pytest.mark.parametrize("who", ["member", "admin", "security", "system"])
def test_other_roles_are_refused_through_the_policy_and_the_refusal_is_audited(client, make_user, personas, who):
    user = (
        make_user(f"{who}-administrator", admin_role=who) if who in ("security", "system") else getattr(personas, who)
    )
    client.force_login(user)
    assert client.post("/audit/verify/").status_code == 403
    assert not AuditVerifyRun.objects.exists()
    denied = AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).order_by("-sequence").first()
    assert denied.outcome == Outcome.DENIED and denied.actor_name == user.username
    run = AuditVerifyRun.objects.create(
        requested_by_id="1", requested_by_name="audrey", requested_at="2026-01-01T00:00Z"
    )
    assert client.get(f"/audit/verify/{run.pk}/").status_code == 403


def test_a_verifier_that_crashes_leaves_a_failed_run_recorded(client, auditor, signed_chain, monkeypatch):
    def crash(progress):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("compliance.verify_runs.audit_chain_verify", crash)
    client.force_login(auditor)
    run = finished(start(client).pk)
    assert run.state == RunState.FAILED and run.ok is None and "disk on fire" in run.message
    (outcome,) = verify_entries("finish")
    assert outcome.outcome == Outcome.FAILURE and outcome.details["state"] == "failed"
    assert "could not run" in client.get(f"/audit/verify/{run.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_a_run_whose_process_died_is_shown_interrupted_and_does_not_block_a_new_one(client, auditor, signed_chain):
    client.force_login(auditor)
    dead = AuditVerifyRun.objects.create(
        requested_by_id=str(auditor.pk),
        requested_by_name="audrey",
        requested_at=timezone.now() - timedelta(hours=2),
        state=RunState.RUNNING,
    )
    body = client.get(f"/audit/verify/{dead.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "interrupted" in body and 'http-equiv="refresh"' not in body
    run = finished(start(client).pk)
    assert run.pk != dead.pk and run.ok is True


def test_an_unknown_run_or_entry_answers_404_and_the_refusal_is_audited(client, auditor, signed_chain):
    client.force_login(auditor)
    assert client.get("/audit/verify/999999/").status_code == 404
    assert client.get("/audit/entries/999999/").status_code == 404
    denied = AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).order_by("sequence")
    assert [(e.object_type, e.object_id) for e in denied][-2:] == [
        ("compliance.auditverifyrun", "999999"),
        ("compliance.auditentry", "999999"),
    ]


def test_a_long_run_that_still_beats_is_not_interrupted_and_a_silent_one_is(client, auditor, signed_chain):
    """Judged by the last sign of life, not by when it was requested: a run verifying a long chain
    for two hours is still running while its heartbeat is fresh."""
    client.force_login(auditor)
    long_ago = timezone.now() - timedelta(hours=2)
    beating = AuditVerifyRun.objects.create(
        requested_by_id=str(auditor.pk),
        requested_by_name="audrey",
        requested_at=long_ago,
        started_at=long_ago,
        heartbeat_at=timezone.now(),
        state=RunState.RUNNING,
    )
    body = client.get(f"/audit/verify/{beating.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "interrupted" not in body and 'http-equiv="refresh"' in body
    assert client.post("/audit/verify/")["Location"] == f"/audit/verify/{beating.pk}/"  # no second run
    AuditVerifyRun.objects.filter(pk=beating.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=2))
    body = client.get(f"/audit/verify/{beating.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "interrupted" in body
    assert finished(start(client).pk).ok is True


def test_a_running_verification_writes_its_heartbeat(client, auditor, signed_chain, monkeypatch):
    import threading

    from compliance import verify_runs
    from tests.support.waiting import wait_until

    release = threading.Event()
    real_verify = verify_runs.audit_chain_verify

    def slow_verify(progress):
        progress(2)  # how far it has come: the ticker writes it with the heartbeat
        release.wait(DEADLINE_SECONDS)
        return real_verify(progress)

    monkeypatch.setattr(verify_runs, "HEARTBEAT", 0.05)
    monkeypatch.setattr(verify_runs, "audit_chain_verify", slow_verify)
    client.force_login(auditor)
    run = start(client)
    wait_until(lambda: AuditVerifyRun.objects.get(pk=run.pk).heartbeat_at is not None, timeout=DEADLINE_SECONDS)
    first = AuditVerifyRun.objects.get(pk=run.pk).heartbeat_at
    wait_until(lambda: AuditVerifyRun.objects.get(pk=run.pk).heartbeat_at > first, timeout=DEADLINE_SECONDS)
    wait_until(lambda: AuditVerifyRun.objects.get(pk=run.pk).last_sequence == 2, timeout=DEADLINE_SECONDS)
    assert not AuditVerifyRun.objects.get(pk=run.pk).finished
    release.set()
    done = finished(run.pk)
    assert done.ok is True and done.heartbeat_at >= first


def test_the_verification_reports_how_far_it_has_come(signed_chain):
    from compliance.verification import audit_chain_verify

    reported: list[int] = []
    result = audit_chain_verify(reported.append)
    assert result.ok and reported, result.message
    assert reported == sorted(reported) and reported[-1] == result.last_sequence >= signed_chain


def test_a_running_verification_shows_how_far_it_has_come(client, auditor, signed_chain):
    """The ticker writes the last entry the verification reported; the page shows it as a count
    and a determinate progress bar, in both languages."""
    from compliance.verify_runs import _beat

    client.force_login(auditor)
    running = AuditVerifyRun.objects.create(
        requested_by_id=str(auditor.pk),
        requested_by_name="audrey",
        requested_at=timezone.now(),
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
        state=RunState.RUNNING,
        head_sequence=signed_chain,
    )
    stop = threading.Event()
    stop.set()  # one write, then the ticker returns
    _beat(running.pk, stop, [3])
    assert AuditVerifyRun.objects.get(pk=running.pk).last_sequence == 3
    for language, text in (
        ("en", f"Checked up to entry 3 of {signed_chain}"),
        ("zh-hans", f"已核验至第 3 条（共 {signed_chain} 条）"),
    ):
        body = client.get(f"/audit/verify/{running.pk}/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
        assert text in body and f'value="3" max="{signed_chain}"' in body
    # The walk may pass the length recorded at the start (entries written since): never "N+1 of N".
    _beat(running.pk, stop, [signed_chain + 2])
    body = client.get(f"/audit/verify/{running.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f"Checked up to entry {signed_chain + 2} of {signed_chain + 2}" in body
