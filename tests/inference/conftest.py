"""Demo models of two architecture families (built once per session, tests/conftest.py),
engines around them, transformers' own generate as the engine's reference, and a fresh
interpreter that refuses every network connection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import inference  # noqa: F401  (sets the offline switches before transformers loads)
from inference.engine.core import Engine, EngineLimits
from inference.engine.demo_model import DemoModelSpec
from inference.engine.loading import vision_dtype_device
from inference.engine.prompting import model_inputs, place_inputs

# The tiny random models' logits are small (standard deviation about 0.2, top logits below 1),
# where bf16 values are spaced 2**-9 to 2**-8 apart. A batch sums in another order, so where the
# solo run's best two logits are closer than this (a few such spacings), it may pick the other
# token; the divergences seen were all at gaps of 0.004 or less.
NEAR_TIE = 0.02


def steps_before_a_near_tie(solo: list[int], batched: list[int], logits, steps: int, label: str = "") -> int:
    """How many of the first ``steps`` greedy tokens ``batched`` shares with ``solo``; where they
    part, the solo run's best two ``logits`` (one row a step) must have been a near tie."""
    top2 = logits.topk(2, dim=-1).values
    margins = (top2[:, 0] - top2[:, 1]).tolist()
    # The first step where the answers part; from there on they continue different texts.
    parted = next((step for step in range(steps) if solo[step] != batched[step]), steps)
    if parted < steps:
        assert margins[parted] < NEAR_TIE, (
            f"{label}parted at step {parted} where the solo run's best two logits were "
            f"{margins[parted]:.4f} apart (not a near-tie): {solo} vs {batched}"
        )
    return parted


@pytest.fixture(scope="session")
def demo_model_dirs(demo_model_factory) -> dict[str, Path]:
    """One demo model per family (the session's shared builds: qwen2_5_vl is tests/conftest.py's)."""
    return {family: demo_model_factory(DemoModelSpec(family=family)) for family in ("qwen2_5_vl", "qwen2_vl")}


@pytest.fixture(scope="session")
def demo_model_dir(shared_demo_model_dir) -> Path:
    return shared_demo_model_dir


@pytest.fixture(scope="session")
def loaded_models(demo_model_dirs, model_loaded_once) -> dict:
    """Each family loaded once per session, the same loads the other suites share."""
    return {family: model_loaded_once(path) for family, path in demo_model_dirs.items()}


@pytest.fixture(scope="session")
def loaded_model(loaded_models):
    return loaded_models["qwen2_5_vl"]


@pytest.fixture
def configured(settings, shared_demo_model_dir):
    """The shared demo model (fp32, no name or manifest pinned) as the platform's model."""
    settings.MODEL_PATH = shared_demo_model_dir
    settings.MODEL_QUANTIZATION = "fp32"
    settings.MODEL_NAME = ""
    settings.MODEL_MANIFEST_SHA256 = ""
    return settings


@pytest.fixture
def engine_around():
    """``engine_around(loaded, **limits)``: an engine around a loaded model, shut down after the test."""
    engines = []

    def make(loaded, **limits) -> Engine:
        engine = Engine(loaded, EngineLimits(**limits))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.shutdown()


@pytest.fixture
def make_engine(engine_around, loaded_model):
    """``make_engine(loaded=None, **limits)``: an engine around ``loaded`` (the shared demo model
    by default), collecting requests for 50 ms unless ``limits`` say otherwise."""

    def make(loaded=None, **limits) -> Engine:
        limits.setdefault("batch_window_seconds", 0.05)
        return engine_around(loaded or loaded_model, **limits)

    return make


@pytest.fixture
def engine(make_engine) -> Engine:
    return make_engine()


@pytest.fixture
def red_image():
    return Image.new("RGB", (96, 64), (200, 30, 30))


def generate_greedy(loaded, batch, *, max_new_tokens: int, min_new_tokens: int, logits: bool):
    """transformers' generate on ``batch`` (one list of messages per request), greedy, its inputs
    built and placed the way the engine builds them: (generate's output, the prompt's length)."""
    inputs = model_inputs(loaded, [tuple(messages) for messages in batch])
    dtype, device = vision_dtype_device(loaded.model)
    placed = place_inputs(
        inputs, input_device=device, vision_dtype=dtype, vision_device=device, image_keys=loaded.profile.image_keys
    )
    with torch.inference_mode():
        out = loaded.model.generate(
            **placed,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            eos_token_id=list(loaded.eos_token_ids),
            pad_token_id=loaded.pad_token_id,
            output_logits=logits,
            return_dict_in_generate=True,
        )
    return out, placed["input_ids"].shape[1]


REPO = Path(__file__).resolve().parents[2]
# The start of every probe run_without_network runs: an audit hook records every connection
# attempt (and refuses it) from before transformers is imported; the repository is the last
# argument.
NETWORK_REFUSED = """
import json, os, sys
attempts = []

def hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
        attempts.append([event, repr(args)[:200]])
        raise OSError("network access is forbidden in this test")

sys.addaudithook(hook)
sys.path[:0] = [sys.argv[-1], sys.argv[-1] + "/platform"]
import inference  # sets the offline switches
"""


def run_without_network(probe: str, *args: str, hf_home: Path) -> dict:
    """``probe`` after NETWORK_REFUSED in a fresh interpreter (nothing imported or cached by this
    session can hide a network call), its arguments ``args`` then the repository, with an inherited
    "online" overridden and HF_HOME at ``hf_home`` (empty, so nothing can come from a cache): the
    JSON the probe printed last, once it has exited 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["HF_HUB_OFFLINE"] = "0"  # an inherited "online" must be overridden, not obeyed
    env["HF_HOME"] = str(hf_home)
    completed = subprocess.run(
        [sys.executable, "-c", NETWORK_REFUSED + probe, *args, str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])
