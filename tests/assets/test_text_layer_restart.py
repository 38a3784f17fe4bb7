"""The text-layer job across processes, as served (``manage.py serve``): a job queued by a process
that died is picked up by the server's first request; SIGTERM hands the job in hand back
(``pending``, the attempt not counted) and the next server finishes it."""

from __future__ import annotations

import json

from tests.assets.text_layer_documents import font_missing
from tests.conftest import requirement_missing
from tests.support.waiting import wait_until

UPLOAD = r"""
import io
from django.conf import settings
settings.TEXT_LAYER_WORKERS = 0  # this process names itself the job's runner, runs nothing and exits
from accounts.models import User
from assets.services import asset_upload
from compliance.context import RequestContext, request_context
from departments.services import department_create
from departments.tenancy import department_scope
from tests.assets.text_layer_documents import scanned_pdf
with request_context(RequestContext(request_id="restart-test")):
    department = department_create(slug="scans", name="Scans", acting_user="system")
    user = User.objects.create(username="scanner")
    with department_scope(department):
        data = io.BytesIO(scanned_pdf(PAGES))
        asset = asset_upload(department=department, uploaded_by=user, stream=data, original_name="scan.pdf")
print(asset.pk)
"""

STATE = r"""
import json
from assets.documents.models import TextLayer
from departments.tenancy import all_departments
with all_departments(reason="test"):
    layer = TextLayer.objects.get(asset_id="ASSET")
print(json.dumps({
    "status": layer.status, "runner": layer.runner, "attempts": layer.attempts,
    "done": layer.pages_done,
}))
"""


def state(server, asset_id: str) -> dict:
    return json.loads(server.shell(STATE.replace("ASSET", asset_id)).splitlines()[-1])


def test_a_job_survives_its_processes(live_server_factory, tmp_path):
    if font_missing():
        requirement_missing(font_missing())
    env = {"TEXT_LAYER_WORKERS": "1", "MAX_UPLOAD_MB": "20"}
    uploaded = []

    def upload_before_serving(server) -> None:
        uploaded.append(server.shell(UPLOAD.replace("PAGES", "4")).splitlines()[-1])
        assert state(server, uploaded[0])["status"] == "pending"  # its process (the shell) has exited

    # The server's first request (its start-up check) sweeps for abandoned jobs and finds it.
    first = live_server_factory(env=env, prepare=upload_before_serving)
    asset_id = uploaded[0]
    wait_until(lambda: state(first, asset_id)["done"] >= 1, timeout=120, interval=0.5, message="never started")

    # SIGTERM, as systemd or compose stop the server; the database stays (it is not dropped).
    first._process.terminate()
    first._process.wait(timeout=60)
    stopped = state(first, asset_id)
    assert (stopped["status"], stopped["runner"], stopped["attempts"]) == ("pending", "handed back", 0), stopped

    from tests.support.live_server import LiveServer

    same_installation = {**env, "DATA_DIR": first.env["DATA_DIR"]}  # its key ring and storage
    second = LiveServer(tmp_path / "second", env=same_installation, database_url=first.env["DATABASE_URL"]).start()
    try:
        finished = wait_until(
            lambda: (current := state(second, asset_id))["status"] in ("done", "failed") and current,
            timeout=180,
            interval=1.0,
            message="the next server did not finish the job",
        )
        assert finished["status"] == "done" and finished["done"] == 4 and finished["attempts"] == 1, finished
    finally:
        print(f"--- the second server's log ---\n{second.log()[-4000:]}")
        second._process.terminate()
        second._process.wait(timeout=60)
