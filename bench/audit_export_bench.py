"""audit_export of N entries (default 1,000,000) to JSON lines on a durable throw-away PostgreSQL.

    .venv/bin/python bench/audit_export_bench.py [--entries 1000000] [--format jsonl|csv]

Prints entries/s and peak memory of the export, and their ratio to a baseline measured in the
same run: streaming the same rows through the ORM iterator without writing anything, and the
memory of a process that only started Django. Memory is also sampled at 10% of the size to
show it stays flat.
"""

from __future__ import annotations

import argparse

from audit_bench_support import bulk_load, django_setup, durable_database, run_child

FETCH_ONLY = """
from compliance.export import CSV_COLUMNS, CHUNK_SIZE
from compliance.models import AuditEntry
started = time.perf_counter(); rows = 0
for values in AuditEntry.objects.order_by('sequence').values_list(*CSV_COLUMNS).iterator(chunk_size=CHUNK_SIZE):
    rows += 1
result['seconds'] = time.perf_counter() - started; result['entries'] = rows
"""
EXPORT = """
import tempfile, os
from pathlib import Path
from compliance.export import audit_export
with tempfile.TemporaryDirectory() as folder:
    started = time.perf_counter()
    outcome = audit_export(output=Path(folder) / 'trail.{fmt}', format='{fmt}'{window})
    result['seconds'] = time.perf_counter() - started; result['entries'] = outcome.entries
    result['bytes'] = os.path.getsize(outcome.path)
"""
IDLE = "result['seconds'] = 0; result['entries'] = 0"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    args = parser.parse_args()
    with durable_database():
        django_setup()
        seconds = bulk_load(args.entries)
        print(f"loaded {args.entries} chained entries in {seconds:.1f}s ({args.entries / seconds:,.0f}/s, COPY)")
        from compliance.models import AuditEntry

        tenth = AuditEntry.objects.values_list("timestamp", flat=True).get(sequence=max(1, args.entries // 10))
        idle = run_child(IDLE)
        fetch = run_child(FETCH_ONLY)
        small = run_child(
            EXPORT.format(fmt=args.format, window=f", until=datetime.fromisoformat({tenth.isoformat()!r})").replace(
                "import tempfile, os", "import tempfile, os\nfrom datetime import datetime"
            )
        )
        export = run_child(EXPORT.format(fmt=args.format, window=""))
    fetch_rate = fetch["entries"] / fetch["seconds"]
    export_rate = export["entries"] / export["seconds"]
    print(
        f"baseline ORM fetch only: {fetch['seconds']:.2f}s  {fetch_rate:,.0f} rows/s  "
        f"peak {fetch['peak_rss_mb']:.0f} MB"
    )
    print(
        f"audit_export ({args.format}) : {export['seconds']:.2f}s  {export_rate:,.0f} entries/s  "
        f"peak {export['peak_rss_mb']:.0f} MB  file {export['bytes'] / 1e6:.0f} MB"
    )
    print(f"ratio export/fetch throughput: {export_rate / fetch_rate:.2f}")
    print(
        f"peak memory: {small['peak_rss_mb']:.0f} MB for {small['entries']:,} entries, "
        f"{export['peak_rss_mb']:.0f} MB for {export['entries']:,} (idle Django process: {idle['peak_rss_mb']:.0f} MB)"
    )


if __name__ == "__main__":
    main()
