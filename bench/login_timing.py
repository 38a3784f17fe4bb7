"""Sign-in refusals must not reveal whether an account exists (IA-2; docs/identity.md).

Measures, through the real login view on a throw-away PostgreSQL, the median time of refused
sign-ins for (a) an existing account with a wrong password, (b) a name that does not exist,
(c) a locked account, and prints (b)/(a) and (c)/(a): ratios near 1.00 mean no timing oracle.
The baseline (a) is measured in the same run. Also prints the cost of the lockout bookkeeping:
a successful sign-in with and without a prior failure counter (ratio). Not a test.

    .venv/bin/python bench/login_timing.py [--rounds 40] [--floor-ms 400]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "platform"), str(ROOT / "scripts")]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--floor-ms", type=int, default=400, help="LOGIN_FAILURE_MIN_MS (production default 400)")
    args = parser.parse_args()

    from throwaway_services import postgres_server

    with postgres_server() as url, tempfile.TemporaryDirectory(prefix="login-bench-") as data_dir:
        os.environ.update(
            PLATFORM_PROFILE="test",
            DATABASE_URL=url,
            DATA_DIR=data_dir,
            DJANGO_SETTINGS_MODULE="config.settings",
            LOGIN_FAILURE_MIN_MS=str(args.floor_ms),
        )
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.test import Client
        from django.test.utils import setup_test_environment

        setup_test_environment()
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.Argon2PasswordHasher"]  # production's
        call_command("migrate", verbosity=0)
        from accounts.models import LoginThrottle, User

        for i in range(args.rounds + 2):
            user = User(username=f"worker{i}")
            user.set_password("Correct-Horse-9")
            user.save()
        client = Client()

        def timed(username: str, password: str, address: str) -> float:
            started = time.perf_counter()
            client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address)
            return time.perf_counter() - started

        existing, unknown, locked, success_clean, success_counted = [], [], [], [], []
        for i in range(args.rounds):
            existing.append(timed(f"worker{i}", "Wrong-pass-1", f"10.10.{i}.1"))
            unknown.append(timed(f"nobody{i}", "Wrong-pass-1", f"10.11.{i}.1"))
            LoginThrottle.objects.update_or_create(
                kind="account", key=f"locked{i}", defaults={"failures": 5, "locked_until": "2999-01-01T00:00:00Z"}
            )
            locked.append(timed(f"locked{i}", "Wrong-pass-1", f"10.12.{i}.1"))
            success_counted.append(timed(f"worker{i}", "Correct-Horse-9", f"10.13.{i}.1"))  # had one failure
            client.post("/accounts/logout/")
            success_clean.append(timed(f"worker{i}", "Correct-Horse-9", f"10.14.{i}.1"))
            client.post("/accounts/logout/")

        base = statistics.median(existing)
        print(f"rounds={args.rounds} floor_ms={args.floor_ms} hasher=argon2 db=postgresql")
        print(f"refused, existing account (baseline): median {base * 1000:.1f} ms")
        print(f"refused, unknown account / existing: {statistics.median(unknown) / base:.3f}")
        print(f"refused, locked account / existing: {statistics.median(locked) / base:.3f}")
        print(
            "successful sign-in clearing a failure counter / without one: "
            f"{statistics.median(success_counted) / statistics.median(success_clean):.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
