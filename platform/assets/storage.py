"""Encrypted blob storage: stage while streaming (hash + encrypt + write), then commit by rename.

``BlobStager`` takes the upload's bytes as they arrive, updates SHA-256, encrypts them in
authenticated chunks under a fresh data key and writes the ciphertext to a temp file inside the
storage directory (same file system, so the final ``os.replace`` is atomic). Plaintext exists
only in the chunk being processed and in the small head/tail windows kept in memory for content
sniffing: never on disk. Every failure path removes the temp file.

Layout under ``ASSET_STORAGE_DIR``::

    tmp/<storage name>.part        blobs being written (removed on failure)
    blobs/<ab>/<storage name>      committed blobs, named by a random 128-bit token
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import re
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from django.conf import settings

from assets import content, rejections
from assets.chunk_format import DEFAULT_CHUNK_SIZE, ChunkEncryptor, DecryptingReader, decrypt_chunks, new_data_key

STORAGE_NAME = re.compile(r"^[0-9a-f]{32}$")
READ_SIZE = 1024 * 1024
INVALID_STORAGE_NAME = "Invalid storage name"


def storage_root() -> Path:
    return Path(settings.ASSET_STORAGE_DIR)


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def temp_dir() -> Path:
    return _private_dir(storage_root() / "tmp")


def blob_path(storage_name: str) -> Path:
    # The name comes from the database; refuse anything but our own tokens so a tampered row
    # can never point outside the storage directory.
    if not STORAGE_NAME.match(storage_name):
        raise ValueError(INVALID_STORAGE_NAME)
    return storage_root() / "blobs" / storage_name[:2] / storage_name


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class StagedBlob:
    """An encrypted, hashed, not yet committed blob (plus what sniffing learnt on the way)."""

    storage_name: str
    temp_path: Path
    data_key: bytes = field(repr=False)
    size: int
    sha256: str
    kind: content.Kind
    committed: bool = False

    def open_reader(self) -> DecryptingReader:
        return DecryptingReader(self.data_key, open(self.temp_path, "rb"))

    def commit(self) -> Path:
        """Move the blob to its final place (atomic rename on the same file system)."""
        target = blob_path(self.storage_name)
        _private_dir(target.parent)
        os.replace(self.temp_path, target)
        _fsync_dir(target.parent)
        self.committed = True
        return target

    def discard(self) -> None:
        if not self.committed:
            self.temp_path.unlink(missing_ok=True)

    def uncommit(self) -> None:
        """Undo a commit whose database transaction failed: the blob goes, it has no key row."""
        if self.committed:
            blob_path(self.storage_name).unlink(missing_ok=True)
            self.committed = False


class _Sha256Worker:
    """SHA-256 on a thread of its own, fed through a short queue.

    hashlib releases the GIL while it hashes, so the digest is computed while this thread
    encrypts and writes: the upload runs at about the speed of hashing alone, instead of the sum
    of the two. The queue is bounded, so memory stays at a few chunks.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes | memoryview | None] = queue.Queue(maxsize=16)
        self._thread = threading.Thread(target=self._run, name="asset-sha256", daemon=True)
        self._thread.start()
        self._done = False

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            self._hash.update(item)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        # The worker reads the bytes later: hand it something the caller cannot change meanwhile.
        self._queue.put(data if memoryview(data).readonly else bytes(data))

    def _stop(self) -> None:
        if not self._done:
            self._done = True
            self._queue.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self._stop()
        return self._hash.hexdigest()

    def abort(self) -> None:
        self._stop()


class _TempFile:
    """The temp file's descriptor, written without a userspace buffer: the encryptor already
    hands over whole sealed chunks, and a buffer would only add a copy of every byte."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def close(self, *, sync: bool) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)


class BlobStager:
    """Write side of staging: ``write()`` as bytes arrive, then ``finish()`` or ``abort()``."""

    def __init__(self, *, max_bytes: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.max_bytes = max_bytes
        self.storage_name = secrets.token_hex(16)
        self.temp_path = temp_dir() / f"{self.storage_name}.part"
        self._data_key = new_data_key()
        fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = _TempFile(fd)
        self._encryptor = ChunkEncryptor(self._data_key, self._file, chunk_size=chunk_size)
        self._hash = _Sha256Worker()
        self._head = bytearray()
        self._tail = bytearray()
        self.kind: content.Kind | None = None
        self.size = 0
        self.closed = False

    def __enter__(self) -> BlobStager:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            raise ValueError("write to a finished or aborted stager")
        try:
            self.size += len(data)
            if self.size > self.max_bytes:
                raise rejections.too_large(self.max_bytes)
            self._hash.update(data)
            if self.kind is None:
                self._head += data[: content.PREFIX_SIZE - len(self._head)]
                if len(self._head) >= content.PREFIX_SIZE:
                    # Refuse a plainly wrong file now, before it is streamed to the end.
                    self.kind = content.sniff_prefix(bytes(self._head))
            if len(data) >= content.TAIL_SIZE:
                self._tail = bytearray(data[-content.TAIL_SIZE :])
            else:
                self._tail += data
                del self._tail[: -content.TAIL_SIZE]
            self._encryptor.write(data)
        except BaseException:
            self.abort()
            raise

    def finish(self) -> StagedBlob:
        try:
            if self.size == 0:
                raise rejections.empty_file()
            if self.kind is None:
                self.kind = content.sniff_prefix(bytes(self._head))
            content.check_tail(self.kind, bytes(self._tail))
            self._encryptor.finish()
            self._file.close(sync=True)
            sha256 = self._hash.hexdigest()
            self.closed = True
        except BaseException:
            self.abort()
            raise
        return StagedBlob(
            storage_name=self.storage_name,
            temp_path=self.temp_path,
            data_key=self._data_key,
            size=self.size,
            sha256=sha256,
            kind=self.kind,
        )

    def abort(self) -> None:
        self.closed = True
        self._hash.abort()
        with contextlib.suppress(OSError):
            self._file.close(sync=False)
        self.temp_path.unlink(missing_ok=True)


def _chunks_of(stream) -> Iterable[bytes]:
    if hasattr(stream, "chunks"):  # a Django UploadedFile
        yield from stream.chunks(READ_SIZE)
    elif hasattr(stream, "read"):
        while chunk := stream.read(READ_SIZE):
            yield chunk
    else:
        yield from stream


def stage_stream(stream: BinaryIO | Iterable[bytes], *, max_bytes: int, expected_size: int | None = None) -> StagedBlob:
    """Stage a file-like object or an iterator of byte chunks; memory stays at a few chunks.

    ``expected_size`` (a declared Content-Length) turns a short stream into a clear
    "interrupted" refusal instead of a silently truncated file.
    """
    with BlobStager(max_bytes=max_bytes) as stager:
        try:
            for chunk in _chunks_of(stream):
                stager.write(chunk)
        except OSError:
            # The client went away mid-upload (a reset connection, an unreadable request body).
            raise rejections.incomplete_upload() from None
        if expected_size is not None and stager.size != expected_size:
            raise rejections.incomplete_upload()
        return stager.finish()


def blob_open(storage_name: str) -> BinaryIO:
    return open(blob_path(storage_name), "rb")


def blob_decrypted_chunks(storage_name: str, data_key: bytes) -> Iterable[bytes]:
    """Plaintext of a committed blob, authenticated chunk by chunk (for streaming downloads)."""
    with blob_open(storage_name) as handle:
        yield from decrypt_chunks(data_key, handle)


def blob_delete(storage_name: str) -> None:
    path = blob_path(storage_name)
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # only succeeds when empty


def blob_names_on_disk() -> set[str]:
    root = storage_root() / "blobs"
    if not root.exists():
        return set()
    return {path.name for path in root.glob("*/*") if STORAGE_NAME.match(path.name)}
