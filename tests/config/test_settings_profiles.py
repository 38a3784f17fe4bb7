"""Settings are loaded in a fresh interpreter per case: they are read once at start-up."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_SECRET = "p" * 24 + "-production-secret-key-for-tests-only-" + "q" * 12


def run_manage(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SECRET_KEY", "DEBUG", "AUDIT_", "ALLOWED_HOSTS"))}
    base.update({"DATA_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"})
    base.update(env)
    if base.get("PLATFORM_PROFILE") == "production" and "DATABASE_URL" not in env:
        # Production refuses SQLite (config/production.py); these cases connect to no database.
        base["DATABASE_URL"] = "postgres://platform@127.0.0.1:9/platform"
    if base.get("PLATFORM_PROFILE") == "production" and "ASSET_MASTER_KEY_FILE" not in env:
        # Production requires the asset master key ring (docs/assets.md); give every case one.
        key_ring = tmp_path / "asset_master_keys"
        key_ring.write_text("prod-test-1:" + base64.urlsafe_b64encode(b"k" * 32).decode() + "\n")
        base["ASSET_MASTER_KEY_FILE"] = str(key_ring)
    if base.get("PLATFORM_PROFILE") == "production" and "AUDIT_SIGNING_KEY_FILE" not in env:
        # Production requires the checkpoint signing key (docs/audit.md); give every case one.
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        signing_key = tmp_path / "audit_signing_key.pem"
        signing_key.write_bytes(
            Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        base["AUDIT_SIGNING_KEY_FILE"] = str(signing_key)
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], capture_output=True, text=True, env=base, timeout=180
    )


def production_env(**overrides: str) -> dict[str, str]:
    env = {"PLATFORM_PROFILE": "production", "SECRET_KEY": PRODUCTION_SECRET, "ALLOWED_HOSTS": "ai.example.internal"}
    env.update(overrides)
    return env


def test_production_requires_secret_key(tmp_path):
    env = production_env()
    del env["SECRET_KEY"]
    result = run_manage(tmp_path, "check", **env)
    assert result.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) is required in production" in result.stderr


def test_production_requires_allowed_hosts(tmp_path):
    result = run_manage(tmp_path, "check", **production_env(ALLOWED_HOSTS=""))
    assert result.returncode != 0
    assert "ALLOWED_HOSTS is required in production" in result.stderr


def test_production_refuses_debug(tmp_path):
    result = run_manage(tmp_path, "check", **production_env(DEBUG="true"))
    assert result.returncode != 0
    assert "DEBUG cannot be enabled in the production profile" in result.stderr


def test_audit_retention_below_floor_is_a_startup_error(tmp_path):
    result = run_manage(tmp_path, "check", PLATFORM_PROFILE="dev", AUDIT_RETENTION_DAYS="179")
    assert result.returncode != 0
    assert "below the legal floor of 180 days" in result.stderr


def test_malformed_value_is_a_startup_error(tmp_path):
    result = run_manage(tmp_path, "check", PLATFORM_PROFILE="dev", MAX_UPLOAD_MB="lots")
    assert result.returncode != 0
    assert "MAX_UPLOAD_MB='lots' is not a whole number" in result.stderr


def test_secret_key_from_file(tmp_path):
    secret_file = tmp_path / "secret_key"
    secret_file.write_text(PRODUCTION_SECRET)
    env = production_env(SECRET_KEY_FILE=str(secret_file))
    del env["SECRET_KEY"]
    result = run_manage(
        tmp_path,
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print(len(settings.SECRET_KEY))",
        **env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(PRODUCTION_SECRET))


def test_dev_profile_generates_secret_key_once(tmp_path):
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    first = run_manage(tmp_path, "shell", "--no-imports", "-c", code, PLATFORM_PROFILE="dev")
    second = run_manage(tmp_path, "shell", "--no-imports", "-c", code, PLATFORM_PROFILE="dev")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and len(first.stdout.strip()) >= 50
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("profile", ["production"])
def test_production_profile_passes_check_deploy(tmp_path, profile):
    result = run_manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **production_env())
    assert result.returncode == 0, result.stdout + result.stderr
