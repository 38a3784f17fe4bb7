"""audit_verify over N entries (default 1,000,000) on a durable throw-away PostgreSQL.

    .venv/bin/python bench/audit_verify_bench.py [--entries 1000000]

Prints entries/s and peak memory of the verifier, and their ratio to a baseline measured in
the same run: streaming the same rows with the same COPY without looking at them, and the
memory of a process that only started Django.
"""

from __future__ import annotations

import argparse

from audit_bench_support import bulk_load, django_setup, durable_database, run_child

FETCH_ONLY = """
from django.db import connection
from compliance.verification import copy_statement
started = time.perf_counter(); rows = 0
with connection.cursor() as cursor, cursor.cursor.copy(copy_statement(0)) as copy:
    for chunk in copy:
        rows += bytes(chunk).count(b"\\n")
result['seconds'] = time.perf_counter() - started; result['entries'] = rows
"""
VERIFY = """
from compliance.verification import audit_chain_verify
started = time.perf_counter(); outcome = audit_chain_verify()
result['seconds'] = time.perf_counter() - started; result['entries'] = outcome.entries
result['ok'] = outcome.ok; result['message'] = outcome.message; result['checkpoints'] = outcome.checkpoints_matched
"""
IDLE = "result['seconds'] = 0; result['entries'] = 0"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    with durable_database():
        django_setup()
        seconds = bulk_load(args.entries)
        print(f"loaded {args.entries} chained entries in {seconds:.1f}s ({args.entries / seconds:,.0f}/s, COPY)")
        from compliance.checkpoints import checkpoint_sign
        from compliance.models import AuditChainHead

        head = AuditChainHead.objects.get()
        checkpoint_sign(sequence=head.sequence, hash=head.hash)
        idle = run_child(IDLE)
        fetch = run_child(FETCH_ONLY)
        verify = run_child(VERIFY)
    assert verify["ok"] and verify["entries"] == args.entries, verify
    fetch_rate = fetch["entries"] / fetch["seconds"]
    verify_rate = verify["entries"] / verify["seconds"]
    print(
        f"baseline fetch only : {fetch['seconds']:.2f}s  {fetch_rate:,.0f} rows/s  peak {fetch['peak_rss_mb']:.0f} MB"
    )
    print(
        f"audit_verify       : {verify['seconds']:.2f}s  {verify_rate:,.0f} entries/s  "
        f"peak {verify['peak_rss_mb']:.0f} MB"
        f"  ({verify['message']}; {verify['checkpoints']} checkpoint matched)"
    )
    print(f"ratio verify/fetch throughput: {verify_rate / fetch_rate:.2f}")
    print(
        f"peak memory: {verify['peak_rss_mb']:.0f} MB vs {idle['peak_rss_mb']:.0f} MB for an idle Django process "
        f"(+{verify['peak_rss_mb'] - idle['peak_rss_mb']:.0f} MB)"
    )
    print(
        f"goal >= 200,000 entries/s: {'met' if verify_rate >= 200_000 else 'NOT met'}; goal < 200 MB: "
        f"{'met' if verify['peak_rss_mb'] < 200 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
