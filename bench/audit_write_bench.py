"""Chained audit writes with 1, 4 and 16 concurrent writers on a durable throw-away PostgreSQL.

    .venv/bin/python bench/audit_write_bench.py [--seconds 10] [--writers 1,4,16] [--rounds 1]

Each writer is a process calling audit_record() in a loop, one transaction (one commit) per
entry, as an action would; the sealer chains the entries as it does in production (in the
writers' transactions when the head is free, after their commits otherwise). The clock stops
only when every entry written is in the chain: what the writers left pending when their time
was up is sealed and that time is counted. The baseline, measured in the same run with the same
writers, inserts the same rows into a copy of the table without the chain (no pending step, no
hash, no triggers, no chain constraints), one commit per row: "plain" has the indexes the
console's filters need (any audit table has them, chained or not), "bare" only a primary key.
Prints entries/s and the ratios chained/plain and chained/bare; the chain is verified after.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

from audit_bench_support import django_setup, durable_database

DETAILS = {
    "model": "qwen2.5-vl-7b",
    "prompt_sha256": "ab" * 32,
    "preview": "请识别发票中的金额，电话 138****5678",
    "tokens": {"prompt": 812, "completion": 96},
    "latency_ms": 1234,
}


def _writer(mode: str, seconds: float, start_at: float, counter) -> None:
    django_setup()
    from django.db import connection

    from compliance.chain import canonical_json
    from compliance.services import audit_record

    while time.time() < start_at:
        time.sleep(0.001)
    deadline = start_at + seconds
    written = 0
    details_text = canonical_json(DETAILS)
    insert_plain, insert_bare = (_INSERT.format(table=table) for table in ("bench_plain_indexed", "bench_plain_bare"))
    with connection.cursor() as cursor:
        while time.time() < deadline:
            if mode == "chained":
                audit_record(
                    event_type="inference.call",
                    actor="system",
                    department=1,
                    object_type="inference.conversation",
                    object_id="42",
                    object_repr="对话 42",
                    details=DETAILS,
                )
            else:
                # The same row, written the simplest way: one INSERT, one commit (autocommit).
                cursor.execute(
                    insert_plain if mode == "plain" else insert_bare,
                    [details_text, os.urandom(32).hex(), os.urandom(32).hex()],
                )
            written += 1
    with counter.get_lock():
        counter.value += written


_INSERT = (
    "INSERT INTO {table} (timestamp, actor_type, actor_id, actor_name, department_id, "
    "department_slug, event_type, outcome, object_type, object_id, object_repr, source_ip, user_agent, "
    "request_id, details, prev_hash, hash) VALUES (now(), 'system', '', 'system', 1, '', "
    "'inference.call', 'success', 'inference.conversation', '42', '对话 42', NULL, '', '', %s, %s, %s)"
)


def _chained_count() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM compliance_auditentry")
        return cursor.fetchone()[0]


def run(mode: str, writers: int, seconds: float) -> tuple[int, float]:
    """(entries written, seconds until the last was in the chain)."""
    # Fresh interpreters, not forks: a forked child would inherit the parent's connection pool
    # without its worker threads and wait for a connection forever.
    spawn = multiprocessing.get_context("spawn")
    counter = spawn.Value("q", 0)
    start_at = time.time() + 6.0  # every process has started Django and connected by then
    processes = [spawn.Process(target=_writer, args=(mode, seconds, start_at, counter)) for _ in range(writers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"a {mode} writer failed")
    if mode != "chained":
        return counter.value, seconds
    from compliance.models import AuditPending
    from compliance.sealing import seal_pending

    drain_started = time.time()
    left = AuditPending.objects.count()
    while AuditPending.objects.exists():
        seal_pending()
    drain = time.time() - drain_started
    print(
        f"         ({writers} writers: {counter.value:,} entries; {left} were still pending at the end, "
        f"chained in {drain * 1000:.0f} ms)"
    )
    return counter.value, seconds + drain


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--writers", default="1,4,16")
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat plain/bare/chained this often and report the median ratio"
    )
    args = parser.parse_args()
    with durable_database():
        django_setup()
        from django.db import connection

        with connection.cursor() as cursor:
            for table in ("bench_plain_indexed", "bench_plain_bare"):
                cursor.execute(
                    f"CREATE TABLE {table} (LIKE compliance_auditentry INCLUDING DEFAULTS); "
                    f"ALTER TABLE {table} ADD PRIMARY KEY (sequence); "
                    f"CREATE SEQUENCE {table}_seq OWNED BY {table}.sequence; "
                    f"ALTER TABLE {table} ALTER sequence SET DEFAULT nextval('{table}_seq')"
                )
            # The indexes the console's filters need, which any audit table has, chained or not
            # (the chain's own constraints, unique prev_hash and hash, are left out).
            cursor.execute(
                'CREATE INDEX ON bench_plain_indexed ("timestamp"); CREATE INDEX ON bench_plain_indexed (request_id); '
                'CREATE INDEX ON bench_plain_indexed (department_id, event_type, "timestamp"); '
                'CREATE INDEX ON bench_plain_indexed (actor_name, "timestamp")'
            )
            cursor.execute("SHOW fsync")
            fsync = cursor.fetchone()[0]
            cursor.execute("SHOW synchronous_commit")
            synchronous = cursor.fetchone()[0]
        connection.close()
        print(f"PostgreSQL fsync={fsync} synchronous_commit={synchronous}; {args.seconds:.0f}s per run")
        print(f"{'writers':>7}  {'chained/s':>10}  {'plain/s':>10}  {'ratio':>6}  {'bare/s':>10}  {'ratio':>6}")
        for writers in (int(value) for value in args.writers.split(",")):
            ratios = []
            for _ in range(args.rounds):
                plain_entries, plain_seconds = run("plain", writers, args.seconds)
                bare_entries, bare_seconds = run("bare", writers, args.seconds)
                before = _chained_count()
                chained_entries, chained_seconds = run("chained", writers, args.seconds)
                if _chained_count() - before != chained_entries:
                    raise SystemExit(f"{chained_entries} entries written but {_chained_count() - before} chained")
                plain, chained = plain_entries / plain_seconds, chained_entries / chained_seconds
                bare = bare_entries / bare_seconds
                ratios.append((chained / plain, chained / bare, chained))
                print(
                    f"{writers:>7}  {chained:>10,.0f}  {plain:>10,.0f}  {chained / plain:>6.2f}  "
                    f"{bare:>10,.0f}  {chained / bare:>6.2f}"
                )
            if args.rounds > 1:
                plain_ratio = statistics.median(ratio[0] for ratio in ratios)
                bare_ratio = statistics.median(ratio[1] for ratio in ratios)
                rate = statistics.median(ratio[2] for ratio in ratios)
                print(
                    f"{writers:>7}  median of {args.rounds}: {rate:,.0f} chained/s, ratio {plain_ratio:.2f} "
                    f"(plain), {bare_ratio:.2f} (bare)"
                )
        from compliance.verification import audit_chain_verify

        result = audit_chain_verify()
        print(f"audit_verify after the runs: {'intact' if result.ok else 'BROKEN'}: {result.message}")


if __name__ == "__main__":
    main()
