"""Every environment variable the platform reads is documented in README and deploy/.env.example."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READERS = re.compile(r"env_(?:str|bool|int|list|networks|choice|secret|path)\(\s*\"([A-Z][A-Z0-9_]+)\"")


def variables_read() -> set[str]:
    names = set()
    for path in [
        *(ROOT / "platform").rglob("*.py"),
        *(ROOT / "inference").rglob("*.py"),
        *(ROOT / "compliance").rglob("*.py"),
    ]:
        if "migrations" in path.parts:
            continue
        names.update(READERS.findall(path.read_text(encoding="utf-8")))
    return names


def test_readers_are_found():
    names = variables_read()
    assert {"SECRET_KEY", "DATABASE_URL", "MODEL_PATH", "AUDIT_RETENTION_DAYS", "LDAP_SERVER_URI"} <= names


def test_every_variable_is_in_the_env_example():
    text = (ROOT / "deploy" / ".env.example").read_text(encoding="utf-8")
    missing = sorted(name for name in variables_read() if not re.search(rf"\b{name}(_FILE)?=", text))
    assert not missing, f"add to deploy/.env.example: {missing}"


def test_every_variable_is_in_the_readme():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = sorted(name for name in variables_read() if f"`{name}" not in text)
    assert not missing, f"add to the README configuration table: {missing}"
