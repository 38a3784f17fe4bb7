"""A model's own code is copied under DATA_DIR by default (the systemd units make the home
directory read-only), unless the operator chose HF_HOME or HF_MODULES_CACHE."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import os, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup(); "
    "from transformers.utils import HF_MODULES_CACHE; print(HF_MODULES_CACHE)"
)


def modules_cache(tmp_path: Path, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    base.update({"DATA_DIR": str(tmp_path), "PLATFORM_PROFILE": "test", "PYTHONPATH": f"{ROOT}:{ROOT / 'platform'}"})
    base.update(env)
    completed = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=base, timeout=180, check=False, cwd=ROOT
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout.strip().splitlines()[-1]


def test_remote_code_goes_under_the_data_directory_by_default(tmp_path):
    assert modules_cache(tmp_path) == str(tmp_path / "hf-modules")


def test_an_operator_s_choice_is_kept(tmp_path):
    assert modules_cache(tmp_path, HF_MODULES_CACHE=str(tmp_path / "mine")) == str(tmp_path / "mine")
    assert modules_cache(tmp_path, HF_HOME=str(tmp_path / "home")) == str(tmp_path / "home" / "modules")
