"""make_demo_model and model_manifest."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from inference.engine.loading import load_model
from inference.engine.manifest import MANIFEST_NAME


def test_make_demo_model_builds_a_loadable_second_family_with_a_manifest(tmp_path, capsys):
    target = tmp_path / "demo"
    call_command("make_demo_model", "--output", str(target), "--family", "qwen2_vl")
    assert "random weights" in capsys.readouterr().out
    assert (target / MANIFEST_NAME).is_file()
    loaded = load_model(target, quantization="fp32")
    assert loaded.family == "qwen2_vl" and loaded.is_demo

    before = (target / MANIFEST_NAME).read_text()
    call_command("make_demo_model", "--output", str(target), "--if-missing")
    assert "leaving it as it is" in capsys.readouterr().out
    assert (target / MANIFEST_NAME).read_text() == before
    with pytest.raises(CommandError, match="not empty"):
        call_command("make_demo_model", "--output", str(target))


def test_make_demo_model_never_deletes_a_real_model(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(CommandError, match="does not hold a demo model"):
        call_command("make_demo_model", "--output", str(real), "--force")
    assert (real / "model.safetensors").exists()


def test_model_manifest_write_and_verify(tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\x00" * 64)
    call_command("model_manifest", "--path", str(model), "--write")
    assert "MODEL_MANIFEST_SHA256=" in capsys.readouterr().out
    call_command("model_manifest", "--path", str(model), "--verify")
    assert "2 files match" in capsys.readouterr().out
    (model / "model.safetensors").write_bytes(b"\x01" * 64)
    with pytest.raises(CommandError, match="does not match"):
        call_command("model_manifest", "--path", str(model), "--verify")
