"""The key files the production profile requires to start, made new for a test."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def production_keys_write(directory: Path, key_id: str) -> tuple[Path, Path]:
    """A new audit signing key (Ed25519, PEM) and a new asset master key ring (one key named
    ``key_id``, owner-only) in ``directory``; returns (signing key file, key ring file)."""
    signing_key = directory / "audit_signing_key.pem"
    signing_key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    # The asset key ring format of platform/assets/keyring.py: "<key id>:<urlsafe base64 key>".
    master_keys = directory / "asset_master_keys"
    master_keys.write_text(f"{key_id}:{base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}\n")
    master_keys.chmod(0o600)
    return signing_key, master_keys
