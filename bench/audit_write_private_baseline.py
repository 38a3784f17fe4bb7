"""The audit append path as it was before it moved to public APIs, kept only as the baseline of
``audit_write_bench.py --compare`` (never imported by the platform).

It ran compliance_audit_append as a statement prepared once per session and executed through
libpq directly (``pgconn.prepare`` / ``exec_prepared``, psycopg's error_from_result), checked
Django's private transaction state (``needs_rollback``, ``validate_no_broken_transaction``) and
built the returned instance by hand-setting ``_state`` (``ModelState``). The code is that of
commit ae28682 (compliance/sealing.py), with the entry's format version added so that it writes
into today's schema exactly like the public path, and its statement under a name of its own.
"""

from __future__ import annotations

import json
import weakref

import psycopg
import psycopg.errors
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models.base import ModelState
from psycopg import pq

from compliance.chain import WRITE_VERSION
from compliance.models import AuditEntry, AuditPending
from compliance.sealing import BATCH, BUSY, DEFERRED, _forward_after_commit, background_sealer


def append_private(values: dict, details_text: str, *, wait: bool) -> AuditEntry | AuditPending:
    values = {"format_version": WRITE_VERSION, **values}
    db = connections[DEFAULT_DB_ALIAS]  # once: every ``connection.x`` is a context-local lookup
    content = json.dumps(
        {**values, "timestamp": values["timestamp"].isoformat(), "details": details_text}, ensure_ascii=False
    )
    with db.wrap_database_errors:
        pending_id, chained, first, last, sequence, prev_hash, entry_hash = _call_append(db, content, wait)
    if chained in (BUSY, DEFERRED) or chained == BATCH:
        db.on_commit(lambda: background_sealer.defer(pending_id))
    if sequence is None:
        return _loaded(AuditPending, {"id": pending_id, **values}, db.alias)
    _forward_after_commit(first, last)
    return _loaded(AuditEntry, {"sequence": sequence, "prev_hash": prev_hash, "hash": entry_hash, **values}, db.alias)


_APPEND_SQL = (
    "SELECT pending_id, chained, first_sequence, last_sequence, entry_sequence, entry_prev_hash, entry_hash "
    "FROM compliance_audit_append($1::json, $2, $3)"
)
_APPEND_SQL_PSYCOPG = _APPEND_SQL.replace("($1::json, $2, $3)", "(%s::json, %s, %s)")
_APPEND_NAME = b"compliance_audit_append_old"  # its own name: the production seam prepares the other
_APPEND_PARAMS = {False: [str(BATCH).encode(), b"f"], True: [str(BATCH).encode(), b"t"]}
_prepared_on: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()
_TUPLES_OK = pq.ExecStatus.TUPLES_OK
_IDLE, _IN_TRANSACTION = pq.TransactionStatus.IDLE, pq.TransactionStatus.INTRANS


def _call_append(db, content: str, wait: bool) -> tuple:
    if db.connection is None:
        db.ensure_connection()
    if db.needs_rollback:
        db.validate_no_broken_transaction()  # raises, as Django's cursor would
    conn = db.connection
    pgconn = conn.pgconn
    status = pgconn.transaction_status
    if (
        conn.prepare_threshold is not None
        or status not in (_IDLE, _IN_TRANSACTION)
        or (status == _IDLE and not conn.autocommit)
    ):
        with psycopg.Cursor(conn) as cursor:
            cursor.execute(_APPEND_SQL_PSYCOPG, [content, BATCH, wait])
            return cursor.fetchone()
    if conn not in _prepared_on:
        _check(conn, pgconn.prepare(_APPEND_NAME, _APPEND_SQL.encode()))
        _prepared_on.add(conn)
    result = pgconn.exec_prepared(_APPEND_NAME, [content.encode(), *_APPEND_PARAMS[wait]])
    if result.status != _TUPLES_OK and status == _IDLE and _sqlstate(result) == "26000":
        _check(conn, pgconn.prepare(_APPEND_NAME, _APPEND_SQL.encode()))
        result = pgconn.exec_prepared(_APPEND_NAME, [content.encode(), *_APPEND_PARAMS[wait]])
    _check(conn, result)
    value = result.get_value
    pending_id, chained = int(value(0, 0)), int(value(0, 1))
    first, last, sequence = (None if value(0, i) is None else int(value(0, i)) for i in (2, 3, 4))
    prev_hash, entry_hash = (None if value(0, i) is None else value(0, i).decode() for i in (5, 6))
    return pending_id, chained, first, last, sequence, prev_hash, entry_hash


def _sqlstate(result) -> str:
    return (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()


def _check(conn: psycopg.Connection, result) -> None:
    if result.status in (_TUPLES_OK, pq.ExecStatus.COMMAND_OK):
        return
    if result.status == pq.ExecStatus.FATAL_ERROR:
        raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
    raise psycopg.OperationalError(f"audit append: unexpected result {result.status.name}")


def _loaded(model, fields: dict, alias: str):
    instance = model.__new__(model)
    instance.__dict__.update(fields)
    instance._state = ModelState()
    instance._state.adding, instance._state.db = False, alias
    return instance
