"""Chained audit writes with 1, 4 and 16 concurrent writers on a durable throw-away PostgreSQL.

    .venv/bin/python bench/audit_write_bench.py [--writers 1,4,16] [--slice 2] [--slices 8] [--compare]

Each writer is a process calling audit_record() in a loop, one transaction (one commit) per
entry, as an action would; the sealer chains the entries as it does in production (in the
writer's round trip when nothing else is pending, by the background sealers otherwise).

The baseline inserts the same rows into a copy of the table without the chain (no pending step,
no hash, no triggers, no chain constraints), one commit per row: "plain" keeps the indexes the
console's filters need (any audit table has them, chained or not), "bare" only a primary key.

Shared machines are noisy: a neighbour's load can halve throughput for a few seconds. So the
same writer processes take turns: a short slice of plain inserts, one of bare inserts, one of
chained writes, again and again, and the ratio is taken within each round of three slices,
seconds apart, then the median over the rounds. A chained slice ends only when every entry
written in it is in the chain: what the writers left pending when the slice was up is sealed
before the next slice starts, and that time counts. The chain is verified at the end.

``--compare`` adds two slices to every round, the same chained writes through two other append
paths, and prints the ratios per round (the three chained slices rotate places from round to
round): "public", Django's cursor alone (compliance.sealing.LIBPQ_SEAM off: what the path is
without its one private seam, compliance/libpq_append.py), and "old", the path as it was before
it moved to public APIs (libpq prepared statement, Django's private transaction state,
hand-built model state: bench/audit_write_private_baseline.py). It also times audit_record
alone, without the commit, in one process: blocks of calls inside one transaction (rolled
back), the three paths in turns, the ratios per turn.
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
MODES = ("plain", "bare", "chained")
PUBLIC, OLD = "public", "old"  # chained, through Django's cursor alone / the old path (--compare)
CHAINED = ("chained", PUBLIC, OLD)

_INSERT = (
    "INSERT INTO {table} (timestamp, actor_type, actor_id, actor_name, department_id, "
    "department_slug, event_type, outcome, object_type, object_id, object_repr, source_ip, user_agent, "
    "request_id, details, prev_hash, hash) VALUES (now(), 'system', '', 'system', 1, '', "
    "'inference.call', 'success', 'inference.conversation', '42', '对话 42', NULL, '', '', %s, %s, %s)"
)


def _writer(commands, results) -> None:
    """Runs slices until told to stop: (mode, deadline) in, entries written out."""
    django_setup()
    from audit_write_private_baseline import append_private
    from django.db import connection

    from compliance import sealing, services
    from compliance.chain import canonical_json
    from compliance.services import audit_record

    details_text = canonical_json(DETAILS)
    inserts = {"plain": _INSERT.format(table="bench_plain_indexed"), "bare": _INSERT.format(table="bench_plain_bare")}
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        results.put(0)  # ready
        while (command := commands.get()) is not None:
            mode, start_at, deadline = command
            services.append = append_private if mode == OLD else sealing.append
            sealing.LIBPQ_SEAM = mode != PUBLIC
            while time.time() < start_at:
                time.sleep(0.0005)
            written = 0
            while time.time() < deadline:
                if mode in CHAINED:
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
                    cursor.execute(inserts[mode], [details_text, os.urandom(32).hex(), os.urandom(32).hex()])
                written += 1
            results.put(written)


def _drain() -> None:
    """Chain whatever the writers left pending (their own sealers are at it too)."""
    from compliance.models import AuditPending
    from compliance.sealing import seal_pending

    while AuditPending.objects.exists():
        if seal_pending() is None:
            time.sleep(0.001)  # a writer's background sealer holds the head: it is chaining them


def _chained_count() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM compliance_auditentry")
        return cursor.fetchone()[0]


def measure(writers: int, slice_seconds: float, slices: int, compare: bool = False) -> list[dict[str, float]]:
    """Per round: entries/s of each mode, its slices seconds apart with the same processes."""
    # Fresh interpreters, not forks: a forked child would inherit the parent's connection pool
    # without its worker threads and wait for a connection forever.
    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    queues = [spawn.Queue() for _ in range(writers)]
    processes = [spawn.Process(target=_writer, args=(queue, results)) for queue in queues]
    for process in processes:
        process.start()
    for _ in processes:
        results.get(timeout=120)
    rounds = []
    try:
        for number in range(slices):
            rates = {}
            modes = MODES
            if compare:  # the three chained paths rotate places from round to round
                turn = number % len(CHAINED)
                modes = (*MODES[:-1], *CHAINED[turn:], *CHAINED[:turn])
            for mode in modes:
                chained_mode = mode in CHAINED
                before = _chained_count() if chained_mode else 0
                start_at = time.time() + 0.05
                for queue in queues:
                    queue.put((mode, start_at, start_at + slice_seconds))
                written = sum(results.get(timeout=slice_seconds + 60) for _ in processes)
                if chained_mode:
                    _drain()
                    if _chained_count() - before != written:
                        raise SystemExit(f"{written} entries written but {_chained_count() - before} chained")
                rates[mode] = written / (time.time() - start_at)
            rounds.append(rates)
    finally:
        for queue in queues:
            queue.put(None)
        for process in processes:
            process.join(60)
    return rounds


def record_alone(turns: int = 8, calls: int = 300) -> list[dict[str, float]]:
    """audit_record's own time without the commit (seconds per call), per path, per turn."""
    from audit_write_private_baseline import append_private
    from django.db import transaction

    from compliance import sealing, services

    def block(mode: str) -> float:
        services.append = append_private if mode == OLD else sealing.append
        sealing.LIBPQ_SEAM = mode != PUBLIC
        try:
            with transaction.atomic():
                started = time.perf_counter()
                for _ in range(calls):
                    services.audit_record(event_type="inference.call", actor="system", department=1, details=DETAILS)
                elapsed = time.perf_counter() - started
                transaction.set_rollback(True)
        finally:
            services.append, sealing.LIBPQ_SEAM = sealing.append, True
        return elapsed / calls

    for mode in CHAINED:  # warm up
        block(mode)
    results = []
    for number in range(turns):
        order = CHAINED[number % 3 :] + CHAINED[: number % 3]
        results.append({mode: block(mode) for mode in order})
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writers", default="1,4,16")
    parser.add_argument("--slice", type=float, default=2.0, help="seconds per slice")
    parser.add_argument("--slices", type=int, default=8, help="rounds of plain, bare and chained slices")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also run the append path without its private seam and the old private path in every round (same run)",
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
            # (the chain's own constraint, unique prev_hash, is left out).
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
        print(
            f"PostgreSQL fsync={fsync} synchronous_commit={synchronous}; {args.slices} rounds of "
            f"{args.slice:g}s slices (plain, bare, chained{', public, old' if args.compare else ''}) per writer count"
        )
        print(f"{'writers':>7}  {'chained/s':>10}  {'plain/s':>10}  {'ratio':>6}  {'bare/s':>10}  {'ratio':>6}")
        comparisons = []
        for writers in (int(value) for value in args.writers.split(",")):
            rounds = measure(writers, args.slice, args.slices, compare=args.compare)
            if args.compare:
                comparisons.append((writers, rounds))
            chained = statistics.median(r["chained"] for r in rounds)
            plain = statistics.median(r["plain"] for r in rounds)
            bare = statistics.median(r["bare"] for r in rounds)
            to_plain = statistics.median(r["chained"] / r["plain"] for r in rounds)
            to_bare = statistics.median(r["chained"] / r["bare"] for r in rounds)
            print(
                f"{writers:>7}  {chained:>10,.0f}  {plain:>10,.0f}  {to_plain:>6.2f}  {bare:>10,.0f}  {to_bare:>6.2f}"
            )
            low, high = min(r["chained"] / r["plain"] for r in rounds), max(r["chained"] / r["plain"] for r in rounds)
            print(f"{'':>7}  (median of {len(rounds)} rounds; ratio to plain per round {low:.2f}..{high:.2f})")
        if args.compare:
            print("\nthe append paths, chained writes/s (same writers, same rounds) and ratios per round:")
            print(
                f"{'writers':>7}  {'chained/s':>10}  {'public/s':>10}  {'old/s':>10}  "
                f"{'chained/public':>16}  {'chained/old':>16}  {'public/old':>16}"
            )

            def ratio(rounds, top: str, bottom: str) -> str:
                values = [r[top] / r[bottom] for r in rounds]
                return f"{statistics.median(values):.2f} ({min(values):.2f}..{max(values):.2f})"

            for writers, rounds in comparisons:
                print(
                    f"{writers:>7}  {statistics.median(r['chained'] for r in rounds):>10,.0f}  "
                    f"{statistics.median(r[PUBLIC] for r in rounds):>10,.0f}  "
                    f"{statistics.median(r[OLD] for r in rounds):>10,.0f}  {ratio(rounds, 'chained', PUBLIC):>16}  "
                    f"{ratio(rounds, 'chained', OLD):>16}  {ratio(rounds, PUBLIC, OLD):>16}"
                )
            turns = record_alone()
            print(
                "audit_record alone, no commit (one process, blocks of 300 calls in one transaction), µs per call: "
                + ", ".join(f"{mode} {statistics.median(t[mode] for t in turns) * 1e6:.0f}" for mode in CHAINED)
                + f"; time public/chained {statistics.median(t[PUBLIC] / t['chained'] for t in turns):.2f}"
                + f", old/chained {statistics.median(t[OLD] / t['chained'] for t in turns):.2f}"
            )
        from compliance.verification import audit_chain_verify

        result = audit_chain_verify()
        print(f"audit_verify after the runs: {'intact' if result.ok else 'BROKEN'}: {result.message}")


if __name__ == "__main__":
    main()
