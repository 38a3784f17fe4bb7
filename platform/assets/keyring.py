"""The master key ring that wraps every file's data key (envelope encryption).

``ASSET_MASTER_KEY_FILE`` holds one key per line, ``<key id>:<32 bytes, base64url>``; lines
starting with ``#`` are comments. The **first** key is active: it wraps new data keys. The
others only unwrap data keys wrapped before a rotation, until ``assets_rotate_master_key`` has
re-wrapped them all and the operator removes the old line. Content is never re-encrypted.

A data key is wrapped with AES-256-GCM under the master key, with the key id and the blob's
storage name as associated data: a wrapped key copied onto another asset's row does not unwrap.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
MASTER_KEY_SIZE = 32
WRAP_NONCE_SIZE = 12
_WRAP_CONTEXT = b"mma-asset-data-key|v1|"

KEYRING_MISSING = "ASSET_MASTER_KEY_FILE {path} does not exist (required in production; see docs/assets.md)"
KEYRING_MALFORMED = "ASSET_MASTER_KEY_FILE {path}, line {line}: expected '<key id>:<32 bytes base64url>'"
KEYRING_EMPTY = "ASSET_MASTER_KEY_FILE {path} holds no key"
KEYRING_DUPLICATE = "ASSET_MASTER_KEY_FILE {path} names key id {key_id!r} twice"
UNKNOWN_KEY_ID = "The master key {key_id!r} that wrapped this file's key is not in the key ring any more"
UNWRAP_FAILED = "The data key did not unwrap (wrong master key, or the wrapped key was altered or moved)"


class KeyRingError(RuntimeError):
    """A data key cannot be unwrapped with the key ring as it is."""


@dataclass(frozen=True)
class KeyRing:
    keys: tuple[tuple[str, bytes], ...]  # (key id, key); the first is active

    @property
    def active_id(self) -> str:
        return self.keys[0][0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(key_id for key_id, _ in self.keys)

    def _key(self, key_id: str) -> bytes:
        for candidate, key in self.keys:
            if candidate == key_id:
                return key
        raise KeyRingError(UNKNOWN_KEY_ID.format(key_id=key_id))

    @staticmethod
    def _aad(key_id: str, binding: str) -> bytes:
        return _WRAP_CONTEXT + key_id.encode() + b"|" + binding.encode()

    def wrap(self, data_key: bytes, *, binding: str) -> tuple[str, bytes]:
        """(key id, wrapped key) for a data key bound to ``binding`` (the storage name)."""
        key_id, key = self.keys[0]
        nonce = os.urandom(WRAP_NONCE_SIZE)
        return key_id, nonce + AESGCM(key).encrypt(nonce, data_key, self._aad(key_id, binding))

    def unwrap(self, key_id: str, wrapped: bytes, *, binding: str) -> bytes:
        key = self._key(key_id)
        wrapped = bytes(wrapped)
        try:
            return AESGCM(key).decrypt(wrapped[:WRAP_NONCE_SIZE], wrapped[WRAP_NONCE_SIZE:], self._aad(key_id, binding))
        except (InvalidTag, ValueError):
            raise KeyRingError(UNWRAP_FAILED) from None


def parse_keyring(text: str, *, path: Path | str = "") -> KeyRing:
    keys: list[tuple[str, bytes]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key_id, sep, encoded = line.partition(":")
        try:
            key = base64.urlsafe_b64decode(encoded.strip().encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            key = b""
        if not sep or not KEY_ID_PATTERN.match(key_id) or len(key) != MASTER_KEY_SIZE:
            raise ImproperlyConfigured(KEYRING_MALFORMED.format(path=path, line=number))
        if any(existing == key_id for existing, _ in keys):
            raise ImproperlyConfigured(KEYRING_DUPLICATE.format(path=path, key_id=key_id))
        keys.append((key_id, key))
    if not keys:
        raise ImproperlyConfigured(KEYRING_EMPTY.format(path=path))
    return KeyRing(tuple(keys))


def new_key_line() -> str:
    key_id = timezone.now().strftime("k%Y%m%d-") + secrets.token_hex(3)
    return f"{key_id}:{base64.urlsafe_b64encode(secrets.token_bytes(MASTER_KEY_SIZE)).decode()}"


def _write_private(path: Path, text: str) -> None:
    """Write atomically with mode 0600, so a crash never leaves a half-written key ring."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


_lock = threading.Lock()
_cache: dict[tuple[str, int, int], KeyRing] = {}


def keyring_path() -> Path:
    return Path(settings.ASSET_MASTER_KEY_FILE)


def keyring_load() -> KeyRing:
    """The key ring; generated on first use outside production, never in production."""
    path = keyring_path()
    with _lock:
        if not path.exists():
            if settings.IS_PRODUCTION:
                raise ImproperlyConfigured(KEYRING_MISSING.format(path=path))
            _write_private(
                path, "# Asset master keys: the first line is active (docs/assets.md)\n" + new_key_line() + "\n"
            )
        stat = path.stat()
        cache_key = (str(path), stat.st_mtime_ns, stat.st_size)
        ring = _cache.get(cache_key)
        if ring is None:
            ring = parse_keyring(path.read_text(encoding="utf-8"), path=path)
            _cache.clear()
            _cache[cache_key] = ring
        return ring


# Unwrapping (reads) may use a ring checked against the file up to this long ago: a ring that
# misses a newer key is reloaded by the caller, and one that still holds a key just retired only
# opens what that key opened a moment ago. Wrapping always uses ``keyring_load()``.
UNWRAP_RECHECK_SECONDS = 1.0
_unwrap_cache: list[tuple[float, str, KeyRing]] = []


def keyring_for_unwrap() -> KeyRing:
    """The ring for unwrapping many data keys in a row (a file list's names, a history): the
    file's status is checked at most once every ``UNWRAP_RECHECK_SECONDS``, not per key."""
    now, path = time.monotonic(), str(keyring_path())
    cached = _unwrap_cache[0] if _unwrap_cache else None
    if cached is not None and cached[1] == path and now - cached[0] < UNWRAP_RECHECK_SECONDS:
        return cached[2]
    ring = keyring_load()
    _unwrap_cache[:] = [(now, path, ring)]
    return ring


def keyring_add_active_key(path: Path | None = None) -> str:
    """Put a freshly generated key first in the ring (it becomes active); returns its id."""
    path = path or keyring_path()
    with _lock:
        existing = path.read_text(encoding="utf-8") if path.exists() else ""
        line = new_key_line()
        comments = [raw for raw in existing.splitlines() if raw.strip().startswith("#")]
        keys = [raw for raw in existing.splitlines() if raw.strip() and not raw.strip().startswith("#")]
        text = "\n".join([*comments, line, *keys]) + "\n"
        parse_keyring(text, path=path)  # never write a ring we could not read back
        _write_private(path, text)
        _cache.clear()
        _unwrap_cache.clear()
        return line.split(":", 1)[0]


def keyring_remove_keys(key_ids: set[str], path: Path | None = None) -> None:
    """Drop retired keys from the ring (after every data key has been re-wrapped)."""
    path = path or keyring_path()
    with _lock:
        lines = path.read_text(encoding="utf-8").splitlines()
        kept = [raw for raw in lines if raw.strip().partition(":")[0] not in key_ids or raw.strip().startswith("#")]
        text = "\n".join(kept) + "\n"
        parse_keyring(text, path=path)
        _write_private(path, text)
        _cache.clear()
        _unwrap_cache.clear()
