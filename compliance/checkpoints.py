"""Signed checkpoints of the chain, kept outside the database (AU-3).

A checkpoint says "entry ``sequence`` had hash ``hash`` at ``time``", signed with an Ed25519
key read from ``AUDIT_SIGNING_KEY_FILE`` (generated there on first use outside production; never
stored in the database). Lines are appended to ``AUDIT_CHECKPOINT_LOG`` (JSON lines, fsynced).
Someone who rewrites the database cannot make a rewritten chain agree with a signed checkpoint,
and a database rolled back to an older backup ends before the newest checkpoint.

Kinds: ``checkpoint`` (periodic and on every export) and ``anchor`` (where a retention purge
cut the chain; verification of the remaining chain starts from it).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from compliance.chain import canonical_json, format_timestamp

SIGNATURE_CONTEXT = b"audit-checkpoint-v1\n"  # domain separation: these signatures mean nothing elsewhere
KIND_CHECKPOINT = "checkpoint"
KIND_ANCHOR = "anchor"
SIGNED_FIELDS = ("kind", "sequence", "hash", "time", "key_id")


@dataclass(frozen=True)
class Checkpoint:
    kind: str
    sequence: int
    hash: str
    time: str
    key_id: str
    signature: str
    valid: bool = True  # set when read back: signature checked against the configured key
    line: int = 0

    def signed_message(self) -> bytes:
        return SIGNATURE_CONTEXT + canonical_json({name: getattr(self, name) for name in SIGNED_FIELDS}).encode()

    def as_json(self) -> dict:
        data = asdict(self)
        del data["valid"], data["line"]
        return data


def _key_path() -> Path:
    return Path(settings.AUDIT_SIGNING_KEY_FILE)


def _generate_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # O_EXCL: two processes starting together must not each write a different key.
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)


@lru_cache(maxsize=4)
def _load_private_key(path_text: str) -> Ed25519PrivateKey:
    path = Path(path_text)
    if not path.exists():
        if settings.IS_PRODUCTION:
            raise ImproperlyConfigured(f"AUDIT_SIGNING_KEY_FILE={path_text!r} does not exist")
        _generate_key(path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured(f"AUDIT_SIGNING_KEY_FILE={path_text!r} is not an Ed25519 private key")
    return key


def signing_key() -> Ed25519PrivateKey:
    return _load_private_key(str(_key_path()))


def public_key() -> Ed25519PublicKey:
    return signing_key().public_key()


def public_key_pem() -> str:
    return (
        public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    )


def key_id(key: Ed25519PublicKey | None = None) -> str:
    raw = (key or public_key()).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def log_path() -> Path:
    return Path(settings.AUDIT_CHECKPOINT_LOG)


def checkpoint_sign(*, sequence: int, hash: str, kind: str = KIND_CHECKPOINT) -> Checkpoint:
    """Sign ``(sequence, hash)`` and append it to the log. Sign committed entries only."""
    unsigned = Checkpoint(
        kind=kind,
        sequence=int(sequence),
        hash=hash,
        time=format_timestamp(datetime.now(UTC)),
        key_id=key_id(),
        signature="",
    )
    signature = base64.b64encode(signing_key().sign(unsigned.signed_message())).decode()
    checkpoint = Checkpoint(**{**unsigned.as_json(), "signature": signature})
    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    line = (json.dumps(checkpoint.as_json(), sort_keys=True) + "\n").encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # one whole line per writer, even from several processes
        os.write(descriptor, line)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return checkpoint


def _parse(number: int, text: str, verifier: Ed25519PublicKey, expected_key_id: str) -> Checkpoint:
    try:
        data = json.loads(text)
        checkpoint = Checkpoint(
            kind=str(data["kind"]),
            sequence=int(data["sequence"]),
            hash=str(data["hash"]),
            time=str(data["time"]),
            key_id=str(data["key_id"]),
            signature=str(data["signature"]),
            line=number,
        )
    except (ValueError, KeyError, TypeError):
        return Checkpoint(
            kind="malformed", sequence=-1, hash="", time="", key_id="", signature="", valid=False, line=number
        )
    valid = checkpoint.key_id == expected_key_id and checkpoint.kind in (KIND_CHECKPOINT, KIND_ANCHOR)
    if valid:
        try:
            verifier.verify(base64.b64decode(checkpoint.signature, validate=True), checkpoint.signed_message())
        except (InvalidSignature, ValueError):
            valid = False
    return Checkpoint(**{**checkpoint.as_json(), "valid": valid, "line": number})


def checkpoints_read(path: Path | None = None) -> Iterator[Checkpoint]:
    """Every line of the log, each with its signature checked (``valid``)."""
    path = path or log_path()
    if not path.exists():
        return
    verifier = public_key()
    expected = key_id(verifier)
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if text.strip():
                yield _parse(number, text, verifier, expected)


def checkpoint_latest(kind: str = KIND_CHECKPOINT) -> Checkpoint | None:
    latest = None
    for checkpoint in checkpoints_read():
        if checkpoint.valid and checkpoint.kind == kind and (latest is None or checkpoint.sequence >= latest.sequence):
            latest = checkpoint
    return latest


def checkpoint_create(*, acting_user=None, reason: str = "scheduled") -> Checkpoint:
    """Record an AUDIT_CHECKPOINT entry and sign it, so the checkpoint covers its own entry.

    Run it outside a transaction (cron/systemd via ``manage.py audit_checkpoint``): a checkpoint
    must only ever sign an entry that is committed.
    """
    from compliance.events import EventType
    from compliance.services import audit_record

    entry = audit_record(
        event_type=EventType.AUDIT_CHECKPOINT,
        actor=acting_user or "system",
        object_type="compliance.checkpoint_log",
        object_repr=str(log_path())[:255],
        details={"reason": reason, "key_id": key_id()},
        wait_for_chain=True,  # seals everything pending first, then signs this entry
    )
    return checkpoint_sign(sequence=entry.sequence, hash=entry.hash)
