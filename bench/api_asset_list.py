"""Authenticated JSON endpoint vs a bare Django view returning the same JSON, same run.

All go through the same Django stack in this process (middleware included, Django's test client
as the WSGI caller, one thread = one worker), 20 files in the department, ``limit=20``:

- ``GET /api/v1/assets`` with an API key: authentication (key look-up), per-key throttle in the
  cache, scope check, department scope, count + page query, JSON;
- bare view A: a plain Django function view that runs the same count and page query and builds
  the same JSON by hand (no authentication, no DRF) — what the API layer is compared with;
- bare view B: a plain view returning the first response's JSON, computed once (no database).

Figures: requests/s (API) / requests/s (bare A) — goal >= 0.5; and the same against B.

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
    os.environ["API_KEY_RATE_PER_MINUTE"] = "1000000"
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
    from departments.api_keys.services import api_key_create
    from departments.services import department_create, membership_add
    from departments.tenancy import department_scope

    department = department_create(slug="bench", name="Bench", acting_user="system")
    owner = User.objects.create_user("bench", password="Correct-Horse-9")
    # A key lives by its creator's rights: the creator administers the department.
    membership_add(user=owner, department=department, role="admin", acting_user="system")
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

    from assets.api import _LIST_FIELDS, asset_as_dict
    from assets.models import Asset

    def bare_constant(request):
        return JsonResponse(payload)

    def bare_query(request):
        with department_scope(department):
            queryset = Asset.objects.filter(department=department).order_by("-created_at").only(*_LIST_FIELDS)
            count = queryset.count()
            items = [asset_as_dict(asset) for asset in queryset[:20]]
        return JsonResponse({"count": count, "next": None, "previous": None, "results": items})

    module = type(sys)("bench_urls")
    module.urlpatterns = [
        path("bench/bare-query", bare_query),
        path("bench/bare", bare_constant),
        path("", include(settings.ROOT_URLCONF)),
    ]
    sys.modules["bench_urls"] = module

    def rate(url: str, requests: int) -> float:
        started = time.perf_counter()
        for _ in range(requests):
            response = client.get(url)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200 and response.json() == payload
        return requests / elapsed

    urls = {"api": "/api/v1/assets?limit=20", "bare_query": "/bench/bare-query", "bare": "/bench/bare"}
    with override_settings(ROOT_URLCONF="bench_urls"):
        for url in urls.values():
            rate(url, 100)  # warm-up
        rates = {name: [] for name in urls}
        for _ in range(args.rounds):
            for name, url in urls.items():  # interleaved, so drift hits all alike
                rates[name].append(rate(url, args.requests))
    rps = {name: statistics.median(values) for name, values in rates.items()}
    print(f"database: {settings.DATABASES['default']['ENGINE']}, cache: {settings.CACHES['default']['BACKEND']}")
    print(f"authenticated asset list (API key, DRF): {rps['api']:8.1f} requests/s (median of {args.rounds} rounds)")
    print(f"bare view A, same query, no auth/DRF:    {rps['bare_query']:8.1f} requests/s")
    print(f"bare view B, constant JSON, no database: {rps['bare']:8.1f} requests/s")
    print(f"ratio API / bare A: {rps['api'] / rps['bare_query']:.3f}  (goal >= 0.5)")
    print(f"ratio API / bare B: {rps['api'] / rps['bare']:.3f}")


if __name__ == "__main__":
    main()
