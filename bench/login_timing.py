"""Sign-in refusals must not reveal whether an account exists or is locked (IA-2; docs/identity.md).

Measures, through the real login view with Argon2 on a throw-away PostgreSQL, the median time of
refused sign-ins for (a) an existing account with a wrong password, (b) a name that does not
exist, (c) a locked account, and prints (b)/(a) and (c)/(a): ratios near 1.00 mean no timing
oracle. Each ratio is measured in the same run as its baseline, twice, the kinds taking turns
within each round:

- with the production floor (``LOGIN_FAILURE_MIN_MS``, default 400): what a client sees;
- with no floor (0): what the pipeline itself costs. Every refusal runs exactly one password hash
  (a dummy one for unknown and locked names), so the ratios stay near 1.00 even without the floor,
  and a hash slower than the floor (a loaded server) does not reveal a lock either.

Also prints the cost of the lockout bookkeeping: a successful sign-in with and without a prior
failure counter (ratio). Not a test.

    .venv/bin/python bench/login_timing.py [--rounds 20] [--floor-ms 400]
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

PASSWORD = "Correct-Horse-9"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
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

        floors = {"production floor": args.floor_ms / 1000, "no floor": 0.0}
        names = [f"worker{i}" for i in range(len(floors) * args.rounds)]
        for name in names + [f"locked-{name}" for name in names]:
            user = User(username=name)
            user.set_password(PASSWORD)
            user.save()
            if name.startswith("locked-"):
                LoginThrottle.objects.create(kind="account", key=name, failures=5, locked_until="2999-01-01T00:00:00Z")
        client = Client()

        def timed(username: str, password: str, address: str) -> float:
            started = time.perf_counter()
            client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address)
            return time.perf_counter() - started

        kinds = ("wrong password", "unknown", "locked")
        times = {floor: {kind: [] for kind in kinds} for floor in floors}
        success_clean, success_counted = [], []
        for i in range(args.rounds):
            for f, (floor, seconds) in enumerate(floors.items()):
                settings.LOGIN_FAILURE_MIN_SECONDS = seconds
                name = names[i * len(floors) + f]
                times[floor]["wrong password"].append(timed(name, "Wrong-pass-1", f"10.{10 + f}.{i}.1"))
                times[floor]["unknown"].append(timed(f"nobody-{name}", "Wrong-pass-1", f"10.{20 + f}.{i}.1"))
                times[floor]["locked"].append(timed(f"locked-{name}", "Wrong-pass-1", f"10.{30 + f}.{i}.1"))
            name = names[i]  # had one failure just now: its counter is cleared by the sign-in
            success_counted.append(timed(name, PASSWORD, f"10.40.{i}.1"))
            client.post("/accounts/logout/")
            success_clean.append(timed(name, PASSWORD, f"10.41.{i}.1"))
            client.post("/accounts/logout/")

        print(f"rounds={args.rounds} hasher=argon2 db=postgresql (kinds and floors take turns in each round)")
        for floor, seconds in floors.items():
            base = statistics.median(times[floor]["wrong password"])
            print(f"{floor} ({seconds * 1000:.0f} ms):")
            print(f"  refused, wrong password (baseline): median {base * 1000:.1f} ms")
            print(f"  refused, unknown / wrong password: {statistics.median(times[floor]['unknown']) / base:.3f}")
            print(f"  refused, locked / wrong password: {statistics.median(times[floor]['locked']) / base:.3f}")
        print(
            "successful sign-in clearing a failure counter / without one: "
            f"{statistics.median(success_counted) / statistics.median(success_clean):.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
