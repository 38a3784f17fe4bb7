"""The fast paths of the audit trail give the same bytes as the reference code in compliance.chain.

On PostgreSQL audit_record hashes inside the database (one statement under the head lock) and
audit_verify reads entries pre-encoded by the database; on SQLite both stay on the Python path.
Either way every entry must hash, re-read through the ORM, exactly as chain.chain_hash() says,
and the verifier's canonical bytes must equal chain.canonical() of the stored entry.
"""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from compliance.chain import canonical, chain_hash
from compliance.context import RequestContext, request_context
from compliance.events import EventType, Outcome
from compliance.models import AuditEntry
from compliance.services import audit_record
from compliance.verification import audit_chain_verify, entry_rows

pytestmark = pytest.mark.django_db

VARIED_DETAILS = [
    {},
    {"n": 1, "z": "身份证", "a": [1, 2, 3]},
    {"é": 1, "Z": 2, "a": 3, "中": 4, "😀": 5, "aa": 6, "b": 7},  # key order: code points, not jsonb's
    {"nested": {"deeper": {"list": [{"y": None, "x": True}, False, [], {}], "empty": ""}}},
    {"escapes": 'quote " backslash \\ newline \n tab \t cr \r nul-ish \x01 \x1f del \x7f ls \u2028 / slash'},
    {"numbers": [0, -1, 2**63 - 1, -(2**63), 10**30, 2.5, -0.125, 1e-7, 1.5e-300, 123456.789, 0.1]},
    {"unicode": "emoji 😀, combining e\u0301, CJK 对话, RTL שלום, BOM \ufeff"},
    {"bools": [True, False, None], "text": "", "spaces": "  lead and trail  "},
]
ADDRESSES = [None, "127.0.0.1", "10.1.2.3", "2001:db8::1", "2001:0db8:0000:0000:0000:0000:0000:0001", "::1"]


def _write_varied(personas) -> list[AuditEntry]:
    written = []
    for index, details in enumerate(VARIED_DETAILS):
        address = ADDRESSES[index % len(ADDRESSES)]
        context = RequestContext(
            request_id=f"req-{index}" if index % 3 else "",
            source_ip=address,
            user_agent='Mozilla/5.0 对话 "ua"' if index % 2 else "",
        )
        with request_context(context):
            written.append(
                audit_record(
                    event_type=EventType.ASSET_VIEW,
                    outcome=[Outcome.SUCCESS, Outcome.FAILURE, Outcome.DENIED][index % 3],
                    actor=[personas.member, "system", None][index % 3],
                    department=[personas.department_a, None, 987654321][index % 3],
                    object_type="assets.asset" if index % 2 else "",
                    object_id=str(index * 7),
                    object_repr=f'文件 {index}\n"x"\\ é',
                    details=details,
                )
            )
    return written


def test_written_entries_hash_as_the_reference_encoding(personas):
    written = _write_varied(personas)
    for returned in written:
        stored = AuditEntry.objects.get(sequence=returned.sequence)
        assert chain_hash(stored.prev_hash, stored) == stored.hash == returned.hash
        assert (stored.timestamp, stored.prev_hash, stored.details) == (
            returned.timestamp,
            returned.prev_hash,
            returned.details,
        )
    sequences = [entry.sequence for entry in written]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    timestamps = [entry.timestamp for entry in written]
    assert timestamps == sorted(timestamps), "timestamps follow the sequence order"
    for previous, entry in zip(written, written[1:], strict=False):
        assert entry.prev_hash == previous.hash


def test_verifier_reads_the_reference_canonical_bytes(personas):
    written = _write_varied(personas)
    first = written[0].sequence
    rows = {sequence: (data, prev, stored) for sequence, data, prev, stored in entry_rows(first - 1)}
    assert sorted(rows) == [entry.sequence for entry in written]
    for entry in AuditEntry.objects.filter(sequence__gte=first):
        data, prev_hash, stored_hash = rows[entry.sequence]
        assert data == canonical(entry), f"entry {entry.sequence} ({entry.source_ip}, {entry.details})"
        assert (prev_hash, stored_hash) == (entry.prev_hash, entry.hash)
    result = audit_chain_verify()
    assert result.ok, result.message
    assert result.last_sequence == written[-1].sequence


@pytest.mark.parametrize(("synchronous", "expected"), [(True, "on"), (False, "off")])
def test_synchronous_commit_setting_scopes_the_audited_transaction(settings, synchronous, expected):
    if connection.vendor != "postgresql":
        pytest.skip("synchronous_commit is a PostgreSQL setting; SQLite has no equivalent to switch")
    settings.AUDIT_SYNCHRONOUS_COMMIT = synchronous
    with connection.cursor() as cursor, transaction.atomic():
        # The throw-away test server may run with synchronous_commit off: start from "on" so the
        # switch is observable in both directions.
        cursor.execute("SET LOCAL synchronous_commit TO on")
        audit_record(event_type=EventType.LOGIN)
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == expected
