"""Authenticated JSON endpoint vs a bare Django view returning the same JSON, same run.

Both go through the same Django stack in this process (middleware included, Django's test
client as the WSGI caller, one thread = one worker): ``GET /api/v1/assets`` with an API key
(authentication, per-key throttle in the cache, scope check, department scope, a paginated
query of 20 files, serialisation) vs a function view that returns the first response's JSON,
already computed. Figure: requests/s (API) / requests/s (bare).   Goal >= 0.5.

    .venv/bin/python bench/api_asset_list.py [--requests 2000] [--rounds 3]

SQLite in a temp directory unless DATABASE_URL is set; the throttle's cache is local memory
unless REDIS_URL is set (production uses Redis: pass REDIS_URL to measure that).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "platform")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="bench-asset-list-"))
    os.environ.setdefault("PLATFORM_PROFILE", "test")
    os.environ["DATA_DIR"] = str(data_dir)
    os.environ["API_KEY_RATE_PER_MINUTE"] = "100000000"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.http import JsonResponse
    from django.test import Client
    from django.test.utils import override_settings
    from django.urls import include, path
    from PIL import Image

    call_command("migrate", verbosity=0)
    from accounts.models import User
    from assets.services import asset_upload
    from departments.api_key_services import api_key_create
    from departments.services import department_create
    from departments.tenancy import department_scope

    department = department_create(slug="bench", name="Bench", acting_user="system")
    owner = User.objects.create_user("bench", password="Correct-Horse-9")
    for index in range(20):
        buffer = io.BytesIO()
        Image.new("RGB", (32, 32), (index * 10, 20, 30)).save(buffer, format="PNG")
        with department_scope(department):
            asset_upload(department=department, uploaded_by=owner, stream=iter([buffer.getvalue()]),
                         original_name=f"file-{index}.png")  # fmt: skip
    key = api_key_create(department=department, name="bench", scopes=["assets:read"], created_by=owner).raw_key

    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    first = client.get("/api/v1/assets?limit=20")
    assert first.status_code == 200, first.content
    payload = first.json()
    assert payload["count"] == 20

    def bare(request):
        return JsonResponse(payload)

    module = type(sys)("bench_urls")
    module.urlpatterns = [path("bench/bare", bare), path("", include(settings.ROOT_URLCONF))]
    sys.modules["bench_urls"] = module

    def rate(url: str, requests: int) -> float:
        started = time.perf_counter()
        for _ in range(requests):
            response = client.get(url)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200 and response.json() == payload
        return requests / elapsed

    with override_settings(ROOT_URLCONF="bench_urls"):
        rate("/api/v1/assets?limit=20", 100)
        rate("/bench/bare", 100)  # warm-up
        api_rates, bare_rates = [], []
        for _ in range(args.rounds):
            api_rates.append(rate("/api/v1/assets?limit=20", args.requests))
            bare_rates.append(rate("/bench/bare", args.requests))
    api_rps, bare_rps = statistics.median(api_rates), statistics.median(bare_rates)
    print(f"database: {settings.DATABASES['default']['ENGINE']}, cache: {settings.CACHES['default']['BACKEND']}")
    print(f"authenticated asset list: {api_rps:8.1f} requests/s (median of {args.rounds} rounds)")
    print(f"bare Django view:         {bare_rps:8.1f} requests/s")
    print(f"ratio: {api_rps / bare_rps:.3f}  (goal >= 0.5)")


if __name__ == "__main__":
    main()
