"""Shared pieces of the audit benchmarks: a durable throw-away PostgreSQL with the schema, a bulk
loader that computes the chain in Python and COPYs it in, and child processes that report
their own peak memory. Benchmarks are not tests; run them by hand (see docs/audit.md)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "platform"), str(ROOT / "scripts")]


def bench_env(database_url: str, data_dir: str) -> dict[str, str]:
    return dict(
        os.environ,
        PLATFORM_PROFILE="test",
        DATABASE_URL=database_url,
        DATA_DIR=data_dir,
        DJANGO_SETTINGS_MODULE="config.settings",
        AUDIT_SYSLOG_ADDRESS="",
    )


@contextlib.contextmanager
def durable_database() -> Iterator[tuple[str, str]]:
    """(DATABASE_URL, DATA_DIR) of a migrated, durable (fsync on) throw-away cluster."""
    from throwaway_services import postgres_server

    with postgres_server(durable=True) as url, tempfile.TemporaryDirectory(prefix="audit-bench-") as data_dir:
        env = bench_env(url, data_dir)
        subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"], env=env, check=True
        )
        os.environ.update(env)
        yield url, data_dir


def django_setup() -> None:
    import django

    django.setup()


def synthetic_rows(count: int) -> Iterator[tuple]:
    """Realistic entries with the chain computed here (same code as audit_record's hash)."""
    from compliance.chain import CANONICAL_FIELDS, canonical_json, chain_hash
    from compliance.models import GENESIS_HASH

    events = ["inference.call", "asset.upload", "asset.download", "auth.login", "access.denied", "conversation.view"]
    start = datetime.now(UTC) - timedelta(days=30)
    prev_hash = GENESIS_HASH
    for sequence in range(1, count + 1):
        department = sequence % 7 or None
        entry = SimpleNamespace(
            sequence=sequence,
            timestamp=start + timedelta(microseconds=sequence * 2_000 + sequence % 997),
            actor_type="user",
            actor_id=str(sequence % 500 + 1),
            actor_name=f"user{sequence % 500 + 1}",
            department_id=department,
            department_slug=f"dept{department}" if department else "",
            event_type=events[sequence % len(events)],
            outcome="success" if sequence % 13 else "denied",
            object_type="inference.conversation",
            object_id=str(sequence // 3),
            object_repr=f"对话 {sequence // 3}",
            source_ip=f"10.{sequence % 250}.{sequence % 199}.{sequence % 97 + 1}",
            user_agent="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130 Safari/537.36",
            request_id=f"{sequence:032x}",
            details={
                "model": "qwen2.5-vl-7b",
                "prompt_sha256": hashlib.sha256(str(sequence).encode()).hexdigest(),
                "preview": "请识别发票中的金额，电话 138****5678",
                "tokens": {"prompt": sequence % 900, "completion": sequence % 300},
                "latency_ms": sequence % 5000,
            },
            prev_hash=prev_hash,
        )
        entry.hash = chain_hash(prev_hash, entry)
        prev_hash = entry.hash
        values = [getattr(entry, name) for name in CANONICAL_FIELDS]
        values[CANONICAL_FIELDS.index("details")] = canonical_json(entry.details)
        yield (*values, entry.prev_hash, entry.hash)


def bulk_load(count: int) -> float:
    """COPY ``count`` chained entries in (triggers off for the load, as a restore would); seconds."""
    from django.db import connection

    from compliance.chain import CANONICAL_FIELDS

    columns = ", ".join(f'"{name}"' for name in (*CANONICAL_FIELDS, "prev_hash", "hash"))
    started = time.perf_counter()
    last = None
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor, for COPY
        cursor.execute("SET session_replication_role = replica")
        with raw.copy(f"COPY compliance_auditentry ({columns}) FROM STDIN") as copy:
            for row in synthetic_rows(count):
                copy.write_row(row)
                last = row
        cursor.execute("UPDATE compliance_auditchainhead SET sequence = %s, hash = %s", [last[0], last[-1]])
        cursor.execute("SET session_replication_role = DEFAULT")
        cursor.execute("ANALYZE compliance_auditentry")
    return time.perf_counter() - started


def run_child(code: str) -> dict:
    """Run ``code`` (which sets ``result``) in a fresh interpreter; returns result + peak RSS (MB)."""
    program = (
        "import json, resource, sys, time\n"
        f"sys.path[:0] = {[str(ROOT), str(ROOT / 'platform')]!r}\n"
        "import django; django.setup()\n"
        "result = {}\n" + code + "\n"
        "result['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps(result))\n"
    )
    completed = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=os.environ)
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr)
    return json.loads(completed.stdout.strip().splitlines()[-1])
