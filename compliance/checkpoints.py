"""Signed checkpoints of the chain, kept outside the database (AU-3).

A checkpoint says "entry ``sequence`` had hash ``hash`` at ``time``", signed with an Ed25519
key read from ``AUDIT_SIGNING_KEY_FILE`` (generated there on first use outside production; never
stored in the database). Lines are appended to ``AUDIT_CHECKPOINT_LOG`` (JSON lines, fsynced).
Someone who rewrites the database cannot make a rewritten chain agree with a signed checkpoint,
and a database rolled back to an older backup ends before the newest checkpoint.

Kinds: ``checkpoint`` (periodic and on every export), ``anchor`` (where a retention purge
cut the chain; verification of the remaining chain starts from it) and ``key_rotation``.

**Rotating the key** (``checkpoint_key_rotate``, ``manage.py audit_key_rotate``): a rotation is
an audited ``audit.checkpoint`` entry at sequence S, the old key's last checkpoint (of S), and a
``key_rotation`` line of S that names the new key and the old one (their ids and raw public
keys) and is signed by *both*: the new key vouches for its predecessor, the old key for its
successor. Then the new key replaces the old one in ``AUDIT_SIGNING_KEY_FILE``; all of it under
the log's lock, under which every signer loads the key it signs with, so no line is signed by the
old key after its rotation line. The verifier trusts the configured key and, walking the
rotation lines back from it, every key it retired; a retired key's signature counts only for
entries up to its rotation point S (a copy of a retired key cannot sign the future). A line
whose key no rotation leads to from the configured key is a ``bad_signature``.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
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
ROTATION_CONTEXT = b"audit-key-rotation-v1\n"
KIND_CHECKPOINT = "checkpoint"
KIND_ANCHOR = "anchor"
KIND_ROTATION = "key_rotation"
SIGNED_FIELDS = ("kind", "sequence", "hash", "time", "key_id")
ROTATION_FIELDS = (*SIGNED_FIELDS, "public_key", "previous_key_id", "previous_public_key")
_ROTATION_ONLY = ("public_key", "previous_key_id", "previous_public_key", "previous_signature")
ROTATION_SAME_KEY = "the new signing key is the key in use ({key_id}): nothing to rotate"
ROTATION_NOT_ED25519 = "{path} is not an Ed25519 private key (PEM, PKCS#8)"


@dataclass(frozen=True)
class Checkpoint:
    kind: str
    sequence: int
    hash: str
    time: str
    key_id: str
    signature: str
    valid: bool = True  # set when read back: signature checked against a trusted key
    line: int = 0
    # A key_rotation line only: the new key (``key_id``, raw public key, base64) and the one it
    # retires, whose signature of the same message is ``previous_signature``.
    public_key: str = ""
    previous_key_id: str = ""
    previous_public_key: str = ""
    previous_signature: str = ""

    def signed_message(self) -> bytes:
        if self.kind == KIND_ROTATION:
            return ROTATION_CONTEXT + canonical_json({name: getattr(self, name) for name in ROTATION_FIELDS}).encode()
        return SIGNATURE_CONTEXT + canonical_json({name: getattr(self, name) for name in SIGNED_FIELDS}).encode()

    def as_json(self) -> dict:
        data = asdict(self)
        del data["valid"], data["line"]
        if self.kind != KIND_ROTATION:
            for name in _ROTATION_ONLY:
                del data[name]
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
def _load_private_key(path_text: str, stamp: tuple | None = None) -> Ed25519PrivateKey:
    """The key in the file; ``stamp`` (inode, mtime, size) keys the cache, so a key file that a
    rotation replaced is read again by every process."""
    path = Path(path_text)
    if not path.exists():
        if settings.IS_PRODUCTION:
            raise ImproperlyConfigured(f"AUDIT_SIGNING_KEY_FILE={path_text!r} does not exist")
        _generate_key(path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured(f"AUDIT_SIGNING_KEY_FILE={path_text!r} is not an Ed25519 private key")
    return key


def _stamp(path: Path) -> tuple | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return (status.st_ino, status.st_mtime_ns, status.st_size)


def signing_key() -> Ed25519PrivateKey:
    path = _key_path()
    return _load_private_key(str(path), _stamp(path))


def public_key() -> Ed25519PublicKey:
    return signing_key().public_key()


def public_key_pem() -> str:
    return (
        public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    )


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey | None = None) -> str:
    return hashlib.sha256(_raw(key or public_key())).hexdigest()[:16]


def log_path() -> Path:
    return Path(settings.AUDIT_CHECKPOINT_LOG)


def _signed(unsigned: Checkpoint, key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.sign(unsigned.signed_message())).decode()


def _checkpoint_new(*, kind: str, sequence: int, hash: str, key: Ed25519PrivateKey) -> Checkpoint:
    unsigned = Checkpoint(
        kind=kind,
        sequence=int(sequence),
        hash=hash,
        time=format_timestamp(datetime.now(UTC)),
        key_id=key_id(key.public_key()),
        signature="",
    )
    return Checkpoint(**{**unsigned.as_json(), "signature": _signed(unsigned, key)})


@contextmanager
def _log_locked() -> Iterator[int]:
    """The log open for appending, under its exclusive lock (one writer, several processes)."""
    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield descriptor
    finally:
        os.close(descriptor)


def _append(descriptor: int, *checkpoints: Checkpoint) -> None:
    lines = b"".join((json.dumps(c.as_json(), sort_keys=True) + "\n").encode() for c in checkpoints)
    os.write(descriptor, lines)
    os.fsync(descriptor)


def checkpoint_sign(*, sequence: int, hash: str, kind: str = KIND_CHECKPOINT) -> Checkpoint:
    """Sign ``(sequence, hash)`` and append it to the log. Sign committed entries only.
    The key is loaded under the log's lock: a rotation (which holds it) is never straddled."""
    with _log_locked() as descriptor:
        checkpoint = _checkpoint_new(kind=kind, sequence=sequence, hash=hash, key=signing_key())
        _append(descriptor, checkpoint)
    return checkpoint


def _decoded(number: int, text: str) -> Checkpoint:
    try:
        data = json.loads(text)
        fields = {name: str(data[name]) for name in ("kind", "hash", "time", "key_id", "signature")} | {
            "sequence": int(data["sequence"])
        }
        if fields["kind"] == KIND_ROTATION:
            fields |= {name: str(data[name]) for name in _ROTATION_ONLY}
        return Checkpoint(**fields, line=number)
    except (ValueError, KeyError, TypeError):
        return Checkpoint(
            kind="malformed", sequence=-1, hash="", time="", key_id="", signature="", valid=False, line=number
        )


def _verifies(key: Ed25519PublicKey, signature: str, message: bytes) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _public(raw_base64: str) -> Ed25519PublicKey | None:
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(raw_base64, validate=True))
    except ValueError:
        return None


@dataclass(frozen=True)
class TrustedKey:
    key: Ed25519PublicKey
    retired_at: int | None = None  # the sequence of its rotation: it signs nothing after it


def trusted_keys(lines: list[Checkpoint], current: Ed25519PublicKey | None = None) -> dict[str, TrustedKey]:
    """The configured key, and every key that a chain of rotation lines leads back to from it:
    each rotation line signed by a trusted successor *and* by the predecessor it names."""
    current = current or public_key()
    trusted = {key_id(current): TrustedKey(current)}
    rotations = [line for line in lines if line.kind == KIND_ROTATION]
    found = True
    while found:
        found = False
        for rotation in rotations:
            successor = trusted.get(rotation.key_id)
            if successor is None or rotation.previous_key_id in trusted:
                continue
            previous = _public(rotation.previous_public_key)
            if (
                previous is not None
                and key_id(previous) == rotation.previous_key_id
                and rotation.public_key == base64.b64encode(_raw(successor.key)).decode()
                and (successor.retired_at is None or rotation.sequence <= successor.retired_at)
                and _verifies(successor.key, rotation.signature, rotation.signed_message())
                and _verifies(previous, rotation.previous_signature, rotation.signed_message())
            ):
                trusted[rotation.previous_key_id] = TrustedKey(previous, retired_at=rotation.sequence)
                found = True
    return trusted


def _checked(checkpoint: Checkpoint, trusted: dict[str, TrustedKey]) -> Checkpoint:
    if checkpoint.kind == "malformed":
        return checkpoint
    signer = trusted.get(checkpoint.key_id)
    valid = (
        signer is not None
        and checkpoint.kind in (KIND_CHECKPOINT, KIND_ANCHOR, KIND_ROTATION)
        and (signer.retired_at is None or checkpoint.sequence <= signer.retired_at)
        and _verifies(signer.key, checkpoint.signature, checkpoint.signed_message())
    )
    if valid and checkpoint.kind == KIND_ROTATION:
        # Counted only if it retired a key the walk from the configured key reached through it.
        retired = trusted.get(checkpoint.previous_key_id)
        valid = retired is not None and retired.retired_at == checkpoint.sequence
        valid = valid and _verifies(retired.key, checkpoint.previous_signature, checkpoint.signed_message())
    return replace(checkpoint, valid=valid)


def checkpoints_read(path: Path | None = None) -> Iterator[Checkpoint]:
    """Every line of the log, each with its signature checked (``valid``) against the keys the
    configured one vouches for (``trusted_keys``)."""
    path = path or log_path()
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        lines = [_decoded(number, text) for number, text in enumerate(handle, start=1) if text.strip()]
    trusted = trusted_keys(lines)
    for checkpoint in lines:
        yield _checked(checkpoint, trusted)


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


def _key_from_pem(pem: bytes, where: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured(ROTATION_NOT_ED25519.format(path=where))
    return key


def checkpoint_key_rotate(*, new_key_pem: bytes | None = None, acting_user=None) -> Checkpoint:
    """Retire the signing key for a new one (``new_key_pem``, PEM PKCS#8 Ed25519; a fresh key when
    None) from the next entry on; returns the ``key_rotation`` line (module docstring).

    Audited first (an ``audit.checkpoint`` entry naming both key ids, chained before anything is
    signed), then, under the log's lock: the old key's last checkpoint of that entry, the rotation
    line signed by both keys, and the new key written over the key file (atomically, mode 0600).
    Run it outside a transaction, like ``checkpoint_create``.
    """
    from compliance.events import EventType
    from compliance.services import audit_record

    new_key = _key_from_pem(new_key_pem, "the new key") if new_key_pem else Ed25519PrivateKey.generate()
    old_key = signing_key()
    old_id, new_id = key_id(old_key.public_key()), key_id(new_key.public_key())
    if old_id == new_id:
        raise ImproperlyConfigured(ROTATION_SAME_KEY.format(key_id=old_id))
    entry = audit_record(
        event_type=EventType.AUDIT_CHECKPOINT,
        actor=acting_user or "system",
        object_type="compliance.checkpoint_log",
        object_repr=str(log_path())[:255],
        details={"reason": "key_rotation", "key_id": old_id, "new_key_id": new_id},
        wait_for_chain=True,
    )
    path = _key_path()
    staged = path.with_name(f".{path.name}.{new_id}.new")
    descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(
            new_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        handle.flush()
        os.fsync(handle.fileno())
    try:
        return _rotate_locked(entry, new_key, staged, path)
    finally:
        staged.unlink(missing_ok=True)  # gone once installed; never left behind on a failure


def _rotate_locked(entry, new_key: Ed25519PrivateKey, staged: Path, path: Path) -> Checkpoint:
    new_id = key_id(new_key.public_key())
    with _log_locked() as log:
        old_key = signing_key()  # read again under the lock: the key that really signs until now
        last = _checkpoint_new(kind=KIND_CHECKPOINT, sequence=entry.sequence, hash=entry.hash, key=old_key)
        unsigned = Checkpoint(
            kind=KIND_ROTATION,
            sequence=entry.sequence,
            hash=entry.hash,
            time=last.time,
            key_id=new_id,
            signature="",
            public_key=base64.b64encode(_raw(new_key.public_key())).decode(),
            previous_key_id=key_id(old_key.public_key()),
            previous_public_key=base64.b64encode(_raw(old_key.public_key())).decode(),
        )
        rotation = replace(
            unsigned, signature=_signed(unsigned, new_key), previous_signature=_signed(unsigned, old_key)
        )
        _append(log, last, rotation)
        os.replace(staged, path)  # from here on every signer loads the new key
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return rotation
