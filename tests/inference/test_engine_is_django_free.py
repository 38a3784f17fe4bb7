"""``inference/engine`` is free of Django: every one of its modules imports in a fresh interpreter
where Django cannot be imported at all. ``inference.runtime`` is the one place that builds an
engine from the Django settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: makes ``django`` unimportable, imports every module of the package
# named in argv[1] and prints, as JSON, the modules that failed and the Django modules loaded.
CHECK = r"""
import importlib, importlib.abc, json, pkgutil, sys, traceback

class NoDjango(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "django" or name.startswith("django."):
            raise ImportError(f"django is not importable here ({name})")
        return None

sys.meta_path.insert(0, NoDjango())
package = importlib.import_module(sys.argv[1])
modules = [sys.argv[1]] + [
    info.name for info in pkgutil.walk_packages(package.__path__, prefix=sys.argv[1] + ".")
]
failed = {}
for name in modules:
    try:
        importlib.import_module(name)
    except Exception:
        failed[name] = traceback.format_exc(limit=-3)
loaded = sorted(name for name in sys.modules if name == "django" or name.startswith("django."))
print(json.dumps({"modules": modules, "failed": failed, "django_loaded": loaded}))
"""


def import_without_django(package: str, *extra_path: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = os.pathsep.join(str(path) for path in (*extra_path, REPO))
    done = subprocess.run(
        [sys.executable, "-c", CHECK, package],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_engine_module_imports_without_django():
    report = import_without_django("inference.engine")
    expected = {f"inference.engine.{path.stem}" for path in (REPO / "inference" / "engine").glob("*.py")}
    assert set(report["modules"]) >= expected - {"inference.engine.__init__"}
    assert report["failed"] == {}, "\n".join(report["failed"].values())
    assert report["django_loaded"] == []


def test_the_check_catches_a_module_that_imports_django(tmp_path):
    (tmp_path / "leaky").mkdir()
    (tmp_path / "leaky" / "__init__.py").write_text("")
    (tmp_path / "leaky" / "clean.py").write_text("import json\n")
    (tmp_path / "leaky" / "uses_settings.py").write_text("from django.conf import settings\n")
    report = import_without_django("leaky", tmp_path)
    assert set(report["failed"]) == {"leaky.uses_settings"}
