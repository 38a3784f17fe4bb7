"""The one private seam of the audit write path: in autocommit, compliance_audit_append runs as a
statement prepared once per database session, through libpq.

Everything else on audit_record's path uses Django's and psycopg's public APIs, and so does this
statement inside a transaction (Django's cursor). In autocommit (an entry written outside an
action's transaction: refusals, sign-ins, API look-ups) it goes through psycopg's low-level
libpq wrapper (``Connection.pgconn``: ``prepare``/``exec_prepared``) instead of psycopg's
Python execute layer, which cannot prepare a statement on a Django connection (Django turns
psycopg's preparing off). Measured with ``bench/audit_write_bench.py --compare``, same run, with
and without this module: docs/audit.md, "Writing". It is worth that only with the statement
prepared; libpq without preparing was worth less than the 20 % a private seam must bring.

Why only in autocommit: the session can lose the statement (DISCARD ALL, DEALLOCATE ALL, a
pooler's reset). In autocommit nothing is lost: it is prepared again and run. Inside a
transaction the error would abort the action's transaction, so there Django's cursor runs the
statement, unprepared, and a reset session costs nothing.

It relies on library internals, so it is pinned: ``VERIFIED_WITH`` names the versions it was
verified against, and a test fails when the installed ones differ. To move them, re-read
psycopg's ``pq`` wrapper and ``errors.error_from_result`` and Django's
``BaseDatabaseWrapper.connection`` / ``wrap_database_errors``, run tests/compliance on PostgreSQL
and the benchmark with ``--compare``, then update the pins (or delete this module:
compliance.sealing then uses Django's cursor alone).
"""

from __future__ import annotations

import weakref

import psycopg
import psycopg.errors
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import pq

VERIFIED_WITH = {"django": "5.2.19", "psycopg": "3.3.9"}

NAME = b"compliance_audit_append"
SQL = (
    b"SELECT pending_id, chained, first_sequence, last_sequence, entry_sequence, entry_prev_hash, entry_hash "
    b"FROM compliance_audit_append($1::json, $2, $3)"
)
_UNDEFINED_STATEMENT = "26000"  # invalid_sql_statement_name: the session lost the statement
_OK = pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK
_IDLE = pq.TransactionStatus.IDLE
_WAIT = {False: b"f", True: b"t"}
# The sessions (psycopg connections, which the pool hands from one Django connection to another)
# where the statement is prepared.
_prepared_on: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()


def append_row(db: BaseDatabaseWrapper, content: str, batch: int, wait: bool) -> tuple | None:
    """compliance_audit_append's row, or None where Django's cursor must run the statement:
    inside a transaction, or when the session is not idle (pipeline mode)."""
    if not transaction.get_autocommit(using=db.alias):  # also opens the connection
        return None
    conn = db.connection
    pgconn = conn.pgconn
    if pgconn.transaction_status != _IDLE or not conn.autocommit:
        return None
    params = [content.encode(), str(batch).encode(), _WAIT[wait]]
    with db.wrap_database_errors:
        if conn not in _prepared_on:
            _check(conn, pgconn.prepare(NAME, SQL))
            _prepared_on.add(conn)
        result = pgconn.exec_prepared(NAME, params)
        if result.status not in _OK and _sqlstate(result) == _UNDEFINED_STATEMENT:
            # Deallocated behind our back (DISCARD ALL, DEALLOCATE ALL): in autocommit nothing
            # was lost, prepare it again.
            _check(conn, pgconn.prepare(NAME, SQL))
            result = pgconn.exec_prepared(NAME, params)
        _check(conn, result)
    value = result.get_value
    pending_id, chained = int(value(0, 0)), int(value(0, 1))
    first, last, sequence = (None if value(0, i) is None else int(value(0, i)) for i in (2, 3, 4))
    prev_hash, entry_hash = (None if value(0, i) is None else value(0, i).decode() for i in (5, 6))
    return pending_id, chained, first, last, sequence, prev_hash, entry_hash


def _sqlstate(result: pq.abc.PGresult) -> str:
    return (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()


def _check(conn: psycopg.Connection, result: pq.abc.PGresult) -> None:
    if result.status in _OK:
        return
    if result.status == pq.ExecStatus.FATAL_ERROR:
        raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
    raise psycopg.OperationalError(f"audit append: unexpected result {result.status.name}")
