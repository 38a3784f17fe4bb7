"""The loopback server harness itself: the app is served over real HTTP with its own database."""

import json
import time
import urllib.error
import urllib.request


def fetch(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback only
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_live_server_serves_and_loads_the_model(live_server_factory, shared_demo_model_dir):
    server = live_server_factory(model_path=shared_demo_model_dir, env={"MODEL_READINESS_CHECK": "true"})
    assert fetch(f"{server.base_url}/healthz") == (200, {"status": "ok"})
    deadline = time.monotonic() + 120
    status, body = fetch(f"{server.base_url}/readyz")
    while status != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
        status, body = fetch(f"{server.base_url}/readyz")
    assert status == 200, body
    assert body["checks"]["model"]["ok"] is True
    assert server.shell("from departments.models import Department; print(Department.objects.count())") == "0"
