"""The loopback server harness itself: the app is served over real HTTP with its own database."""

import json
import urllib.request


def test_live_server_serves_and_loads_the_model(live_server_factory, shared_demo_model_dir):
    server = live_server_factory(model_path=shared_demo_model_dir, env={"MODEL_READINESS_CHECK": "true"})
    with urllib.request.urlopen(f"{server.base_url}/healthz", timeout=10) as response:  # noqa: S310 - loopback
        assert (response.status, json.loads(response.read())) == (200, {"status": "ok"})
    body = server.wait_for("/readyz", timeout=120)  # 503 while the model loads, then 200
    assert body["checks"]["model"]["ok"] is True
    assert server.shell("from departments.models import Department; print(Department.objects.count())") == "0"
