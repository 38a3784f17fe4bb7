"""Demo models of two architecture families (built once per session, tests/conftest.py) and
engines around them."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

import inference  # noqa: F401  (sets the offline switches before transformers loads)
from inference.engine.core import Engine, EngineLimits
from inference.engine.demo_model import DemoModelSpec
from inference.engine.loading import load_model


@pytest.fixture(scope="session")
def demo_model_dirs(demo_model_factory) -> dict[str, Path]:
    """One demo model per family (the session's shared builds: qwen2_5_vl is tests/conftest.py's)."""
    return {family: demo_model_factory(DemoModelSpec(family=family)) for family in ("qwen2_5_vl", "qwen2_vl")}


@pytest.fixture(scope="session")
def demo_model_dir(shared_demo_model_dir) -> Path:
    return shared_demo_model_dir


@pytest.fixture(scope="session")
def loaded_models(demo_model_dirs, shared_demo_model_dir, shared_demo_model) -> dict:
    """Each family loaded once per session (the shared model is the one the other suites use)."""
    return {
        family: shared_demo_model if path == shared_demo_model_dir else load_model(path, quantization="fp32")
        for family, path in demo_model_dirs.items()
    }


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
