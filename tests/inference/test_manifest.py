"""The weight manifest: written by a command, verified at load, a mismatch refuses to load."""

from __future__ import annotations

import json
import shutil

import pytest

from inference.engine.errors import (
    MANIFEST_EXTRA_FILE,
    MANIFEST_MISMATCH,
    MANIFEST_MISSING_FILE,
    MANIFEST_PIN_MISMATCH,
    REMOTE_CODE_REFUSED,
    REMOTE_CODE_UNPINNED,
    ManifestError,
    ModelLoadError,
)
from inference.engine.loading import load_model
from inference.engine.manifest import MANIFEST_NAME, file_sha256, manifest_verify, manifest_write


@pytest.fixture
def model_copy(demo_model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(demo_model_dir, copy)
    return copy


def test_manifest_lists_every_file_in_sha256sum_format(model_copy):
    verified = manifest_verify(model_copy)
    text = (model_copy / MANIFEST_NAME).read_text()
    names = {p.name for p in model_copy.iterdir() if p.name != MANIFEST_NAME}
    assert set(verified.files) == names
    assert "model.safetensors" in names
    line = next(line for line in text.splitlines() if line.endswith("  config.json"))
    assert line.split("  ")[0] == file_sha256(model_copy / "config.json")


def test_a_changed_weight_file_refuses_the_load(model_copy):
    weights = model_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(ManifestError) as caught:
        load_model(model_copy, quantization="fp32")
    assert str(caught.value) == MANIFEST_MISMATCH.format(name="model.safetensors")


def test_an_unlisted_file_refuses_the_load(model_copy):
    (model_copy / "modeling_evil.py").write_text("import os\n")
    with pytest.raises(ManifestError) as caught:
        manifest_verify(model_copy)
    assert str(caught.value) == MANIFEST_EXTRA_FILE.format(name="modeling_evil.py")


def test_a_missing_file_refuses_the_load(model_copy):
    (model_copy / "tokenizer.json").unlink()
    with pytest.raises(ManifestError) as caught:
        manifest_verify(model_copy)
    assert str(caught.value) == MANIFEST_MISSING_FILE.format(name="tokenizer.json")


def test_no_manifest_refuses_the_load(model_copy):
    (model_copy / MANIFEST_NAME).unlink()
    with pytest.raises(ManifestError, match="manage.py model_manifest --write"):
        load_model(model_copy, quantization="fp32")


def test_a_pinned_hash_must_match(model_copy):
    actual = manifest_verify(model_copy).sha256
    with pytest.raises(ManifestError) as caught:
        load_model(model_copy, quantization="fp32", pinned_manifest_sha256="0" * 64)
    assert str(caught.value) == MANIFEST_PIN_MISMATCH.format(actual=actual, expected="0" * 64)


def test_remote_code_is_refused_unless_enabled_and_pinned(model_copy):
    config = json.loads((model_copy / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageTextToText": "modeling_glm.GlmForConditionalGeneration"}
    (model_copy / "config.json").write_text(json.dumps(config))
    digest = manifest_write(model_copy)
    with pytest.raises(ModelLoadError) as refused:
        load_model(model_copy, quantization="fp32")
    assert str(refused.value) == REMOTE_CODE_REFUSED.format(path=model_copy)
    with pytest.raises(ModelLoadError) as unpinned:
        load_model(model_copy, quantization="fp32", trust_remote_code=True)
    assert str(unpinned.value) == REMOTE_CODE_UNPINNED.format(actual=digest)
