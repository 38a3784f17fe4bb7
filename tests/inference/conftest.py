"""Demo models built once per session (two architecture families) and engines around them."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

import inference  # noqa: F401  (sets the offline switches before transformers loads)
from inference.engine.core import Engine, EngineLimits
from inference.engine.demo_model import DemoModelSpec, build_demo_model
from inference.engine.loading import load_model
from inference.engine.manifest import manifest_write


@pytest.fixture(scope="session")
def demo_model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    dirs = {}
    for family in ("qwen2_5_vl", "qwen2_vl"):
        path = build_demo_model(root / family, DemoModelSpec(family=family))
        manifest_write(path)
        dirs[family] = path
    return dirs


@pytest.fixture(scope="session")
def demo_model_dir(demo_model_dirs) -> Path:
    return demo_model_dirs["qwen2_5_vl"]


@pytest.fixture(scope="session")
def loaded_models(demo_model_dirs) -> dict:
    return {family: load_model(path, quantization="fp32") for family, path in demo_model_dirs.items()}


@pytest.fixture(scope="session")
def loaded_model(loaded_models):
    return loaded_models["qwen2_5_vl"]


@pytest.fixture
def make_engine(loaded_model):
    engines = []

    def make(loaded=None, **limits) -> Engine:
        limits.setdefault("batch_window_seconds", 0.05)
        engine = Engine(loaded or loaded_model, EngineLimits(**limits))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.shutdown()


@pytest.fixture
def engine(make_engine) -> Engine:
    return make_engine()


@pytest.fixture
def red_image():
    return Image.new("RGB", (96, 64), (200, 30, 30))
