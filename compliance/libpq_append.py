"""The one private seam of the audit write path: compliance_audit_append run through libpq.

Everything else on audit_record's path uses Django's and psycopg's public APIs. This module
runs the append statement through psycopg's low-level libpq wrapper (``Connection.pgconn``,
``exec_params``) with the check Django's cursor would make first (a private method of Django's
connection), instead of a Django cursor and psycopg's Python execute layer (query conversion,
adaptation, its wait generators). Measured with ``bench/audit_write_bench.py --compare`` in the
same run, with and without this module (docs/audit.md, "Writing"): the seam is kept because it
is worth more than 20 % there. No statement is prepared: nothing for DISCARD ALL or DEALLOCATE
ALL to take away.

It relies on library internals, so it is pinned: ``VERIFIED_WITH`` names the versions it was
verified against, and a test fails when the installed ones differ. To move them, re-read
``django.db.backends.base.base`` (``validate_no_broken_transaction``, ``wrap_database_errors``)
and psycopg's ``pq`` wrapper and ``errors.error_from_result``, run tests/compliance on
PostgreSQL and the benchmark with ``--compare``, then update the pins (or delete this module:
compliance.sealing then uses the public path alone).
"""

from __future__ import annotations

import psycopg
import psycopg.errors
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import pq

VERIFIED_WITH = {"django": "5.2.19", "psycopg": "3.3.9"}

SQL = (
    b"SELECT pending_id, chained, first_sequence, last_sequence, entry_sequence, entry_prev_hash, entry_hash "
    b"FROM compliance_audit_append($1::json, $2, $3)"
)
_TUPLES_OK = pq.ExecStatus.TUPLES_OK
_IDLE, _IN_TRANSACTION = pq.TransactionStatus.IDLE, pq.TransactionStatus.INTRANS
_WAIT = {False: b"f", True: b"t"}


def append_row(db: BaseDatabaseWrapper, content: str, batch: int, wait: bool) -> tuple | None:
    """compliance_audit_append's row, or None where psycopg's cursor must run the statement:
    when it would open the transaction of an atomic block (psycopg sends the BEGIN, with the
    connection's isolation level), in a failed transaction (psycopg raises as the server does)
    or in pipeline mode."""
    db.ensure_connection()
    db.validate_no_broken_transaction()  # raises, as Django's cursor would
    conn = db.connection
    pgconn = conn.pgconn
    status = pgconn.transaction_status
    if not (status == _IN_TRANSACTION or (status == _IDLE and conn.autocommit)):
        return None
    with db.wrap_database_errors:
        result = pgconn.exec_params(SQL, [content.encode(), str(batch).encode(), _WAIT[wait]])
        if result.status != _TUPLES_OK:
            if result.status == pq.ExecStatus.FATAL_ERROR:
                raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
            raise psycopg.OperationalError(f"audit append: unexpected result {result.status.name}")
    value = result.get_value
    pending_id, chained = int(value(0, 0)), int(value(0, 1))
    first, last, sequence = (None if value(0, i) is None else int(value(0, i)) for i in (2, 3, 4))
    prev_hash, entry_hash = (None if value(0, i) is None else value(0, i).decode() for i in (5, 6))
    return pending_id, chained, first, last, sequence, prev_hash, entry_hash
