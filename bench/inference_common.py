"""Shared set-up of the inference benchmarks: a bench-sized demo model, prompts, an engine."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "platform")]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import inference  # noqa: E402,F401  (offline switches before transformers)


def bench_model_dir(argument: str | None) -> Path:
    """An existing model directory, or a bench-sized demo model built once into the temp dir."""
    if argument:
        return Path(argument)
    from inference.engine.demo_model import DemoModelSpec, build_demo_model
    from inference.engine.manifest import MANIFEST_NAME, manifest_write

    path = Path(tempfile.gettempdir()) / "platform-bench-demo-model"
    if not (path / MANIFEST_NAME).exists():
        build_demo_model(path, DemoModelSpec(size="bench"))
        manifest_write(path)
    return path


def prompt(n: int = 0):
    from PIL import Image

    from inference.engine.inputs import Message

    image = Image.new("RGB", (96, 96), (40 + n * 20 % 200, 120, 200))
    return (
        Message("system", "You are a careful assistant."),
        Message("user", f"Describe picture number {n} in detail.", images=(image,)),
    )


def newcomer_prompt(n: int = 0, *, words: int = 45):
    """A newcomer as the continuous-batching figures define it: one 672×672 image and a long
    instruction (≥ 300 prompt tokens on the bench model; the benchmarks print the count)."""
    from PIL import Image

    from inference.engine.inputs import Message

    image = Image.new("RGB", (672, 672), (40 + n * 37 % 200, 120, 200 - n * 13 % 150))
    for x in range(0, 672, 48):  # some structure, so the image is not one flat colour
        image.paste((255 - x % 255, x % 255, 90), (x, x, x + 24, x + 24))
    lines = " ".join(
        f"line {i}: item {i * 7 + n} costs {i * 3 + 1}.50 yuan, quantity {i % 5 + 1};" for i in range(words // 6)
    )
    return (
        Message("system", "You are a careful assistant that reads invoices and answers in full sentences."),
        Message(
            "user", f"Invoice {n}. {lines} Check every line against the picture and report the total.", images=(image,)
        ),
    )


def long_prompt(n: int = 0):
    """A running request: a short text question that gets a long answer."""
    from inference.engine.inputs import Message

    return (Message("user", f"Write a long report number {n} about the quarterly figures."),)


# Run in a served platform's shell: a department "bench" administered by "bench", and a chat
# API key of it, printed (what the API benchmarks call with).
API_KEY_PREPARE = r"""
from datetime import timedelta
from django.utils import timezone
from accounts.models import User
from departments.services import department_create, membership_add
from departments.api_keys.services import api_key_create
department = department_create(slug="bench", name="Bench", acting_user="system")
owner = User.objects.create_user("bench", password="Correct-Horse-9")
# A key lives by its creator's rights: the creator administers the department.
membership_add(user=owner, department=department, role="admin", acting_user="system")
print(api_key_create(department=department, name="bench", scopes=["chat"], created_by=owner,
                     expires_at=timezone.now() + timedelta(days=1)).raw_key)
"""


def api_client(server, *, timeout: float):
    """An HTTP client of a served platform (tests/support/live_server.py) that calls with the bench
    department's chat API key (``API_KEY_PREPARE``), and the name of the model it serves, once loaded."""
    import httpx

    key = server.shell(API_KEY_PREPARE).splitlines()[-1]
    client = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout)
    while (response := client.get("/v1/models")).status_code == 503:  # the first call starts the load
        time.sleep(0.5)
    if response.status_code != 200:
        raise SystemExit(f"/v1/models answered {response.status_code}: {response.text[:500]}")
    return client, response.json()["data"][0]["id"]
