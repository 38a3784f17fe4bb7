#!/usr/bin/env python
"""Run a command (the test suite) with throw-away servers on loopback.

    python scripts/testenv.py [--db postgres|sqlite] -- python -m pytest ...

Starts PostgreSQL (unless --db sqlite) and Redis, exports DATABASE_URL and TEST_REDIS_URL to the
command, and removes the servers afterwards, whatever the command's outcome.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throwaway_services import ServiceError, postgres_server, redis_server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    env = dict(os.environ, PLATFORM_PROFILE="test")
    env.pop("DATABASE_URL", None)
    try:
        with contextlib.ExitStack() as stack:
            if args.db == "postgres":
                env["DATABASE_URL"] = stack.enter_context(postgres_server())
                print(f"testenv: PostgreSQL at {env['DATABASE_URL']}", flush=True)
            env["TEST_REDIS_URL"] = stack.enter_context(redis_server())
            print(f"testenv: Redis at {env['TEST_REDIS_URL']}", flush=True)
            return subprocess.run(command, env=env).returncode
    except ServiceError as exc:
        print(f"testenv: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
