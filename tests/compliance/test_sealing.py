"""Pending entries and the sealer (compliance/sealing.py): nothing written is lost, nothing is
chained twice, the chain never forks, and a pending entry is as protected as a chained one."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from django.db import DatabaseError, close_old_connections, connection, transaction

from compliance import triggers
from compliance.chain import chain_hash
from compliance.events import EventType
from compliance.models import GENESIS_HASH, AuditChainHead, AuditEntry, AuditPending
from compliance.sealing import CONTENT_FIELDS, pending_status, seal_once, seal_pending
from compliance.services import audit_record
from compliance.verification import _fast_walk, audit_chain_verify
from tests.compliance.conftest import raw_sql
from tests.support.waiting import wait_until

# What the pending table's triggers say (compliance/triggers.py), in the database's own wording.
POSTGRESQL = connection.vendor == "postgresql"
PENDING_UPDATE_REFUSED = re.escape(
    triggers.APPEND_ONLY.format(table="compliance_auditpending", operation="UPDATE")
    if POSTGRESQL
    else triggers.PENDING_NOT_CHANGED
)
PENDING_TRUNCATE_REFUSED = re.escape(triggers.APPEND_ONLY.format(table="compliance_auditpending", operation="TRUNCATE"))
# PostgreSQL names the pending row (its id), SQLite cannot.
PENDING_DELETE_REFUSED = (
    re.escape(triggers.PENDING_NOT_CHAINED).replace(re.escape("{entry}"), r"\d+")
    if POSTGRESQL
    else re.escape(triggers.PENDING_NOT_CHAINED_SQLITE)
)

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite serialises writers: the head is never busy there"
)
postgresql_session = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="PostgreSQL only: session state (DISCARD ALL) and column lengths the database enforces",
)


@pytest.fixture(params=[True, False], ids=["libpq-seam", "public-cursor"])
def append_path(request, monkeypatch):
    """audit_record with its one private seam (compliance/libpq_append.py: in autocommit, the
    statement prepared and run through libpq) and with Django's cursor alone."""
    from compliance import sealing

    monkeypatch.setattr(sealing, "LIBPQ_SEAM", request.param)
    return request.param


def _all_chained(timeout: float = 10.0) -> None:
    """The background sealer chains what writers left pending within milliseconds; wait for it."""
    wait_until(lambda: not AuditPending.objects.exists(), timeout=timeout, message="entries were left unchained")


def _chain_intact() -> list[AuditEntry]:
    entries = list(AuditEntry.objects.order_by("sequence"))
    prev = GENESIS_HASH
    for number, entry in enumerate(entries, start=1):
        assert (entry.sequence, entry.prev_hash) == (number, prev)
        assert chain_hash(prev, entry) == entry.hash
        prev = entry.hash
    head = AuditChainHead.objects.get()
    assert (head.sequence, head.hash) == ((entries[-1].sequence, prev) if entries else (0, GENESIS_HASH))
    return entries


@pytest.mark.django_db
def test_a_lone_writer_gets_its_entry_chained_at_once():
    entry = audit_record(event_type=EventType.ASSET_VIEW, details={"n": 1})
    assert isinstance(entry, AuditEntry) and entry.sequence == 1
    assert not AuditPending.objects.exists()
    assert _chain_intact()[0].hash == entry.hash


@pytest.mark.django_db
def test_a_rolled_back_action_leaves_neither_pending_nor_chained_entry():
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_record(event_type=EventType.ASSET_VIEW)
        raise RuntimeError("the action failed")
    assert not AuditPending.objects.exists() and not AuditEntry.objects.exists()


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_writer_never_waits_for_a_busy_head_and_its_entry_is_chained_when_the_holder_commits():
    holder_locked, writer_done, release = threading.Event(), threading.Event(), threading.Event()
    results = {}

    def holder():
        try:
            with transaction.atomic():
                results["holder"] = audit_record(event_type=EventType.ASSET_VIEW, details={"who": "holder"})
                holder_locked.set()
                release.wait(10)
        finally:
            close_old_connections()

    def writer():
        try:
            holder_locked.wait(10)
            results["writer"] = audit_record(event_type=EventType.ASSET_VIEW, details={"who": "writer"})
            writer_done.set()
        finally:
            close_old_connections()

    threads = [threading.Thread(target=holder), threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    # The writer committed while the holder kept the head: it did not wait, its entry is pending.
    assert writer_done.wait(10), "a writer waited for the chain head"
    assert isinstance(results["writer"], AuditPending)
    assert AuditPending.objects.count() == 1 and AuditEntry.objects.count() == 0  # holder not committed yet
    release.set()
    for thread in threads:
        thread.join(10)
    # Once the holder committed, the background sealer chained the writer's entry too.
    _all_chained()
    entries = _chain_intact()
    assert [entry.details["who"] for entry in entries] == ["holder", "writer"]
    assert not AuditPending.objects.exists()


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_lose_nothing_and_never_fork_the_chain():
    writers, each = 8, 25
    errors = []

    def write(number: int):
        try:
            for index in range(each):
                with transaction.atomic():
                    audit_record(event_type=EventType.ASSET_VIEW, details={"writer": number, "index": index})
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=write, args=(number,)) for number in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    _all_chained()
    entries = _chain_intact()
    assert len(entries) == writers * each
    assert len({(entry.details["writer"], entry.details["index"]) for entry in entries}) == writers * each
    assert not AuditPending.objects.exists()
    assert audit_chain_verify().ok


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_an_entry_left_pending_by_a_holder_that_rolled_back_is_chained_when_the_head_is_free(monkeypatch):
    from compliance import sealing

    holder_locked, writer_done, head_found_busy = threading.Event(), threading.Event(), threading.Event()
    seal = sealing.seal_pending

    def seal_watched(**kwargs):
        chained = seal(**kwargs)
        if chained is None:  # the background sealer tried while the holder kept the head
            head_found_busy.set()
        return chained

    monkeypatch.setattr(sealing, "seal_pending", seal_watched)

    def holder():
        try:
            with pytest.raises(RuntimeError), transaction.atomic():
                audit_record(event_type=EventType.ASSET_VIEW, details={"who": "holder"})
                holder_locked.set()
                writer_done.wait(10)
                head_found_busy.wait(10)  # the writer's sealer finds the head busy (and retries later)
                raise RuntimeError("the holder's action failed: no commit, so no sealing after it")
        finally:
            close_old_connections()

    thread = threading.Thread(target=holder)
    thread.start()
    assert holder_locked.wait(10)
    assert isinstance(audit_record(event_type=EventType.ASSET_VIEW, details={"who": "writer"}), AuditPending)
    writer_done.set()
    thread.join(10)
    assert head_found_busy.is_set(), "the writer's sealer never found the head busy"
    _all_chained()
    assert [entry.details["who"] for entry in _chain_intact()] == ["writer"]


@postgresql_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first_statement", [True, False], ids=["entry-opens-the-transaction", "entry-after-a-write"])
def test_an_entry_commits_and_rolls_back_with_its_action(first_statement, append_path):
    """AU-4 whether audit_record's statement opens the action's transaction (psycopg sends the
    BEGIN) or joins one a write of the action opened."""
    from departments.models import Department

    def action(name: str, fail: bool) -> None:
        with transaction.atomic():
            if not first_statement:
                Department.objects.create(slug=name, name=name)
            audit_record(event_type=EventType.ASSET_VIEW, details={"action": name})
            if fail:
                raise RuntimeError("the action failed")

    with pytest.raises(RuntimeError):
        action("failed", fail=True)
    action("done", fail=False)
    _all_chained()
    assert [entry.details["action"] for entry in _chain_intact()] == ["done"]
    assert Department.objects.filter(slug="failed").count() == 0


@postgresql_session
@pytest.mark.django_db(transaction=True)
def test_writes_survive_the_session_discarding_its_prepared_statements(append_path):
    """DISCARD ALL / DEALLOCATE ALL (a pooler's reset, an administrator) lose no entry and fail no
    action, in autocommit or inside an action's transaction."""
    from departments.models import Department

    def prepared() -> int:
        return raw_sql("SELECT count(*) FROM pg_prepared_statements WHERE name = 'compliance_audit_append'")[0][0]

    # The session may come from an earlier test that prepared the statement: start from none.
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    audit_record(event_type=EventType.ASSET_VIEW, details={"n": 1})
    assert prepared() == (1 if append_path else 0)  # the seam prepares it in autocommit
    with connection.cursor() as cursor:
        cursor.execute("DISCARD ALL")
    assert prepared() == 0
    assert isinstance(audit_record(event_type=EventType.ASSET_VIEW, details={"n": 2}), AuditEntry)
    assert prepared() == (1 if append_path else 0)  # prepared again
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    with transaction.atomic():
        Department.objects.create(slug="kept", name="Kept")
        assert isinstance(audit_record(event_type=EventType.ASSET_VIEW, details={"n": 3}), AuditEntry)
    assert isinstance(audit_record(event_type=EventType.ASSET_VIEW, details={"n": 4}), AuditEntry)
    assert [entry.details["n"] for entry in _chain_intact()] == [1, 2, 3, 4]
    assert Department.objects.filter(slug="kept").exists()


@postgresql_session
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first_statement", [True, False], ids=["entry-opens-the-transaction", "entry-after-a-write"])
def test_a_write_the_database_refuses_fails_the_action_even_if_the_caller_swallows_the_error(
    first_statement, append_path
):
    """AU-4 at the database: the failed statement aborts the action's transaction (no savepoint),
    so the action cannot commit without its entry however the caller handles the error."""
    from departments.models import Department

    audit_record(event_type=EventType.ASSET_VIEW, details={"n": "before"})
    too_long = SimpleNamespace(pk=1, slug="x" * 51)  # the column holds 50 characters
    with transaction.atomic():
        if not first_statement:
            Department.objects.create(slug="lost", name="Lost")
        with pytest.raises(DatabaseError):
            audit_record(event_type=EventType.ASSET_VIEW, department=too_long)
        # The caller swallowed the error and leaves the block normally: the commit is refused.
    assert not Department.objects.filter(slug="lost").exists()
    assert [entry.details.get("n") for entry in _chain_intact()] == ["before"]
    assert not AuditPending.objects.exists()
    # The connection is usable again once the action is over.
    assert isinstance(audit_record(event_type=EventType.ASSET_VIEW, details={"n": "after"}), AuditEntry)


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_writer_leaves_its_entry_to_the_sealers_while_others_wait_and_seals_at_once_when_none_do(monkeypatch):
    from compliance import sealing

    monkeypatch.setattr(sealing.background_sealer, "defer", lambda pending_id: None)  # seal by hand here
    holder_locked, release = threading.Event(), threading.Event()

    def holder():
        try:
            with transaction.atomic():
                AuditChainHead.objects.select_for_update().get()
                holder_locked.set()
                release.wait(10)
        finally:
            close_old_connections()

    thread = threading.Thread(target=holder)
    thread.start()
    assert holder_locked.wait(10)
    first = audit_record(event_type=EventType.ASSET_VIEW, details={"n": 1})  # head busy: left pending
    release.set()
    thread.join(10)
    assert isinstance(first, AuditPending)
    # The head is free now, but an entry is waiting: this one joins the backlog rather than
    # sealing in the writer's round trip (under load, sealing is the background sealers' batch work).
    assert isinstance(audit_record(event_type=EventType.ASSET_VIEW, details={"n": 2}), AuditPending)
    assert seal_pending() == 2
    assert isinstance(audit_record(event_type=EventType.ASSET_VIEW, details={"n": 3}), AuditEntry)
    assert [entry.details["n"] for entry in _chain_intact()] == [1, 2, 3]


@pytest.mark.django_db
def test_pending_entries_cannot_be_changed_or_removed_unchained(system_context):
    with transaction.atomic():
        pending = AuditPending(
            timestamp=datetime.now(UTC), actor_type="system", event_type="asset.view", outcome="success"
        )
        pending.save(_from_audit_record=True)
        for sql, message in (
            ("UPDATE compliance_auditpending SET outcome = 'denied'", PENDING_UPDATE_REFUSED),
            ("DELETE FROM compliance_auditpending", PENDING_DELETE_REFUSED),
        ):
            with pytest.raises(DatabaseError, match=message), transaction.atomic():
                raw_sql(sql)
        if connection.vendor == "postgresql":
            with pytest.raises(DatabaseError, match=PENDING_TRUNCATE_REFUSED):
                with transaction.atomic():
                    raw_sql("TRUNCATE compliance_auditpending")
        with pytest.raises(PermissionError):
            AuditPending.objects.filter(pk=pending.pk).update(outcome="denied")
        with pytest.raises(PermissionError):
            pending.delete()
        # The sealer may remove it: the chain now holds the same content.
        assert seal_once(wait=True) == 1
        assert AuditEntry.objects.get().event_type == "asset.view"
        assert not AuditPending.objects.exists()


@pytest.mark.django_db
def test_a_pending_row_cannot_be_removed_against_an_entry_of_other_content(system_context):
    audit_record(event_type=EventType.ASSET_VIEW, details={"n": 1})
    chained = AuditEntry.objects.get()
    with transaction.atomic():
        # Same time, different content: not what the chain holds, so the row may not go.
        AuditPending(
            timestamp=chained.timestamp,
            actor_type=chained.actor_type,
            event_type=chained.event_type,
            outcome="denied",
            details=chained.details,
        ).save(_from_audit_record=True)
        with pytest.raises(DatabaseError, match=PENDING_DELETE_REFUSED), transaction.atomic():
            raw_sql("DELETE FROM compliance_auditpending")


@pytest.mark.django_db
def test_a_pending_row_cannot_be_removed_against_an_entry_of_another_format_version(system_context):
    audit_record(event_type=EventType.ASSET_VIEW, details={"n": 1})
    chained = AuditEntry.objects.get()
    content = {name: getattr(chained, name) for name in CONTENT_FIELDS if name != "format_version"}
    with transaction.atomic():
        AuditPending(**content, format_version=3).save(_from_audit_record=True)
        with pytest.raises(DatabaseError, match=PENDING_DELETE_REFUSED), transaction.atomic():
            raw_sql("DELETE FROM compliance_auditpending")
    if connection.vendor == "sqlite":  # the control: there, the same content in the same version may go
        with transaction.atomic():
            AuditPending(**content, format_version=chained.format_version).save(_from_audit_record=True)
            raw_sql("DELETE FROM compliance_auditpending WHERE format_version = %s", [chained.format_version])


@pytest.mark.django_db
def test_entries_reach_the_chain_only_through_the_sealer():
    with pytest.raises(PermissionError):
        AuditEntry.objects.bulk_create([])
    with pytest.raises(PermissionError):
        AuditEntry(sequence=1).save()


@pytest.mark.django_db
def test_verify_warns_about_entries_left_unchained(system_context):
    with transaction.atomic():
        AuditPending(
            timestamp=datetime(2020, 1, 1, tzinfo=UTC), actor_type="system", event_type="asset.view", outcome="success"
        ).save(_from_audit_record=True)
        assert pending_status()[0] == 1
        result = audit_chain_verify()
        assert result.ok and any("not chained yet" in warning for warning in result.warnings)
        assert seal_pending() == 1
        assert not any("not chained yet" in warning for warning in audit_chain_verify().warnings)


@postgresql_only
@pytest.mark.django_db
def test_the_fast_pass_accepts_what_the_detailed_walk_accepts(system_context, audit_files):
    """Texts that COPY escapes or that the timestamp shortcut does not cover go through the fast
    pass (the benchmark's path) and verify there, not only in the detailed walk."""
    tricky = [
        {"text": "tab\there, newline\nthere, back\\slash, \r, \b, \f, \v"},
        {"text": "身份证 110101********1234 ✓", "nested": {"b": [1, 2.5, None, True]}},
        {},
    ]
    for details in tricky:
        audit_record(event_type=EventType.ASSET_VIEW, details=details)
    audit_record(event_type=EventType.ASSET_VIEW, department=7, object_repr="a\\tb")
    # Timestamps whose fraction PostgreSQL prints trimmed (.5, .12, none at all).
    with transaction.atomic():
        for micro in (500000, 120000, 0):
            AuditPending(
                timestamp=datetime(2026, 1, 2, 3, 4, 5, micro, tzinfo=UTC),
                actor_type="system",
                event_type="asset.view",
                outcome="success",
                source_ip="2001:db8::1",
            ).save(_from_audit_record=True)
        seal_once(wait=True)
    from compliance.verification import VerifyResult

    result = VerifyResult(ok=False)
    head = AuditChainHead.objects.get()
    assert _fast_walk(result, {}, 1, GENESIS_HASH, head.sequence)
    assert result.entries == head.sequence == 7
    raw_sql("SELECT 1")  # the connection is usable after the COPY
    assert audit_chain_verify().ok


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_broken_transaction_is_refused_before_the_statement_is_sent(append_path):
    """As Django's cursor refuses it: an inner block failed, the outer one can only roll back."""
    from django.db.transaction import TransactionManagementError

    with transaction.atomic():
        with pytest.raises(RuntimeError), transaction.atomic(savepoint=False):
            raise RuntimeError("an inner step failed")
        with pytest.raises(TransactionManagementError):
            audit_record(event_type=EventType.ASSET_VIEW)
    assert not AuditPending.objects.exists() and not AuditEntry.objects.exists()


def test_the_libpq_seam_is_verified_with_the_installed_django_and_psycopg():
    """compliance/libpq_append.py uses Django's and psycopg's internals. When either library
    moves, this fails on purpose: re-verify the seam as its docstring says, then update the pins."""
    import django
    import psycopg

    from compliance.libpq_append import VERIFIED_WITH

    installed = {"django": django.__version__, "psycopg": psycopg.__version__}
    assert installed == VERIFIED_WITH, (
        f"compliance/libpq_append.py was verified with {VERIFIED_WITH}, installed are {installed}: "
        "re-verify it (its docstring says how) or delete it"
    )
