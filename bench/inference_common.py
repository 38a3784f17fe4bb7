"""Shared set-up of the inference benchmarks: a bench-sized demo model, prompts, an engine."""

from __future__ import annotations

import os
import sys
import tempfile
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
