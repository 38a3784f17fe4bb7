"""The layout guard: platform/ is a source root, never a package that shadows the stdlib."""

import importlib.util
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_platform_folder_has_no_init_py():
    assert (ROOT / "platform").is_dir()
    assert not (ROOT / "platform" / "__init__.py").exists(), (
        "platform/__init__.py shadows the standard-library module 'platform'; remove it"
    )


def test_import_platform_is_the_standard_library():
    import platform

    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert Path(platform.__file__).resolve().parent == stdlib
    assert callable(platform.system) and platform.system()


def test_apps_import_from_the_source_root():
    for name in ("config", "accounts", "departments", "assets"):
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None
        assert Path(spec.origin).resolve().parent.parent == ROOT / "platform", name
    for name in ("inference", "compliance"):
        assert Path(importlib.util.find_spec(name).origin).resolve().parent.parent == ROOT


def test_manage_py_starts_with_stdlib_platform(tmp_path):
    import subprocess

    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "shell",
            "--no-imports",
            "-c",
            "import platform; print(platform.system())",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Linux"
