"""Throw-away PostgreSQL and Redis servers on loopback, for the test suite and benchmarks.

Each server lives in a temporary directory, listens on a free 127.0.0.1 port, and is stopped and
removed when its context ends. As root, PostgreSQL runs as the ``postgres`` system user (it
refuses to run as root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PG_BIN_CANDIDATES = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise ServiceError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Ask ``process`` to end (SIGTERM); kill it if it has not within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()


def _pg_bin(name: str) -> str:
    for directory in PG_BIN_CANDIDATES:
        if (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    if not found:
        raise ServiceError(f"PostgreSQL's {name} is missing: install Debian's 'postgresql' package")
    return found


def _as_postgres_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix and owner ids to run PostgreSQL tools (as 'postgres' when we are root)."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceError("running as root needs the 'postgres' system user (from Debian's postgresql)") from None
    return ["runuser", "-u", "postgres", "--"], entry.pw_uid, entry.pw_gid


@contextlib.contextmanager
def postgres_server(*, durable: bool = False) -> Iterator[str]:
    """Yield a DATABASE_URL of a fresh cluster. ``durable`` keeps fsync on (for benchmarks)."""
    prefix, uid, gid = _as_postgres_user()
    root = Path(tempfile.mkdtemp(prefix="platform-pg-"))
    data = root / "data"
    port = free_port()
    if uid is not None:
        os.chown(root, uid, gid)
    log = root / "server.log"
    try:
        subprocess.run(
            [
                *prefix,
                _pg_bin("initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} -c max_connections=200"
        )
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        # Diagnostics, e.g. "-c shared_preload_libraries=pg_stat_statements" for a benchmark.
        options += " " + os.environ.get("THROWAWAY_POSTGRES_OPTIONS", "")
        subprocess.run(
            [*prefix, _pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"],
            check=True,
            capture_output=True,
            text=True,
        )
        yield f"postgres://postgres@127.0.0.1:{port}/postgres"
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip()
        if log.exists():
            detail += "\n" + log.read_text(errors="replace")[-2000:]
        raise ServiceError(f"PostgreSQL failed to start: {detail}") from None
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*prefix, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True
            )
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Yield a REDIS_URL of a fresh, memory-only Redis."""
    binary = shutil.which("redis-server")
    if not binary:
        raise ServiceError("redis-server is missing: install Debian's 'redis-server' package")
    root = Path(tempfile.mkdtemp(prefix="platform-redis-"))
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(root),
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(process)
        shutil.rmtree(root, ignore_errors=True)
