"""The encrypted blob format: AES-256-GCM in authenticated chunks (a STREAM-style construction).

Layout of a blob::

    header  = MAGIC (4) | VERSION (1) | chunk_size (4, big-endian) | nonce_prefix (7)
    chunk i = AES-256-GCM(key, nonce_i, plaintext_i, aad_i)  -> ciphertext_i || tag (16)

    nonce_i = nonce_prefix (7) | i (4, big-endian) | final flag (1)
    aad_i   = header | i (8, big-endian) | final flag (1)

Every chunk holds ``chunk_size`` plaintext bytes except the last, which holds 0..chunk_size and
is the only one sealed with the final flag. So a reordered chunk fails (index in nonce and AAD),
a dropped or truncated tail fails (the new last chunk was not sealed as final, or its tag is cut),
appended bytes fail (the real final chunk is then opened as non-final), and a flipped bit
anywhere fails (the tag, or the header bound into every AAD). Each blob has its own random data
key, so a nonce never repeats under one key.

Writing needs one chunk of look-ahead (a full chunk is sealed only when more bytes follow), and
reading needs one chunk of look-ahead to know which chunk is the last; memory stays at a couple
of chunks whatever the size of the file.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"MMA\x01"
VERSION = 1
NONCE_PREFIX_SIZE = 7
HEADER = struct.Struct(">4sBI7s")
HEADER_SIZE = HEADER.size  # 16
TAG_SIZE = 16
DEFAULT_CHUNK_SIZE = 256 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_CHUNKS = 2**32  # the counter field in the nonce

DATA_KEY_SIZE = 32  # AES-256

BLOB_CORRUPT = "The stored file failed its integrity check (altered, truncated or wrong key)."


class BlobIntegrityError(ValueError):
    """The blob was altered, truncated, extended, reordered, or the key is wrong."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(BLOB_CORRUPT + (f" ({detail})" if detail else ""))


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def _nonce(prefix: bytes, index: int, final: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if final else b"\x00")


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


def ciphertext_size(plaintext_size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Size of the blob for a plaintext of ``plaintext_size`` bytes (an empty file is one chunk)."""
    chunks = max(1, -(-plaintext_size // chunk_size))
    return HEADER_SIZE + plaintext_size + chunks * TAG_SIZE


class ChunkEncryptor:
    """Encrypts a stream written to it into ``sink``; call ``finish()`` exactly once."""

    def __init__(self, key: bytes, sink: BinaryIO, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if len(key) != DATA_KEY_SIZE:
            raise ValueError("the data key must be 32 bytes (AES-256)")
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError("chunk size out of range")
        self._aead = AESGCM(key)
        self._sink = sink
        self._chunk_size = chunk_size
        self._prefix = os.urandom(NONCE_PREFIX_SIZE)
        self._header = HEADER.pack(MAGIC, VERSION, chunk_size, self._prefix)
        self._buffer = bytearray()
        self._index = 0
        self._finished = False
        sink.write(self._header)

    def _seal(self, data: bytes | memoryview, final: bool) -> None:
        if self._index >= MAX_CHUNKS:
            raise ValueError("file too large for the chunk counter")
        self._sink.write(
            self._aead.encrypt(_nonce(self._prefix, self._index, final), data, _aad(self._header, self._index, final))
        )
        self._index += 1

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._finished:
            raise ValueError("write after finish")
        size = self._chunk_size
        view = memoryview(data).cast("B")
        # Invariant: the buffer holds at most one chunk. A full chunk is sealed as non-final only
        # once we know more bytes follow, so the last chunk can always be sealed as final in
        # finish(). Whole chunks inside ``data`` are sealed straight from it, without a copy.
        if self._buffer:
            need = size - len(self._buffer)
            if len(view) <= need:
                self._buffer += view
                return
            self._buffer += view[:need]
            self._seal(self._buffer, final=False)
            self._buffer = bytearray()
            view = view[need:]
        while len(view) > size:
            self._seal(view[:size], final=False)
            view = view[size:]
        self._buffer += view

    def finish(self) -> None:
        if self._finished:
            raise ValueError("finish called twice")
        self._seal(bytes(self._buffer), final=True)
        self._buffer = bytearray()
        self._finished = True


def _read_header(source: BinaryIO) -> tuple[bytes, int, bytes]:
    header = source.read(HEADER_SIZE)
    if len(header) != HEADER_SIZE:
        raise BlobIntegrityError("header truncated")
    magic, version, chunk_size, prefix = HEADER.unpack(header)
    if magic != MAGIC or version != VERSION or not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise BlobIntegrityError("unknown header")
    return header, chunk_size, prefix


def _open_chunk(aead: AESGCM, header: bytes, prefix: bytes, index: int, sealed: bytes, final: bool) -> bytes:
    try:
        return aead.decrypt(_nonce(prefix, index, final), sealed, _aad(header, index, final))
    except InvalidTag:
        raise BlobIntegrityError(f"chunk {index}") from None


def decrypt_chunks(key: bytes, source: BinaryIO) -> Iterator[bytes]:
    """Yield the plaintext chunk by chunk; raises BlobIntegrityError on any tampering.

    A chunk is yielded only after it authenticated, but a consumer that needs the whole file to
    be genuine (not just a prefix) must read to the end: the truncation check is on the last one.
    """
    aead = AESGCM(key)
    header, chunk_size, prefix = _read_header(source)
    sealed_size = chunk_size + TAG_SIZE
    current = source.read(sealed_size)
    index = 0
    while True:
        following = source.read(sealed_size)
        final = not following
        if len(current) < TAG_SIZE or (not final and len(current) != sealed_size):
            raise BlobIntegrityError(f"chunk {index} truncated")
        yield _open_chunk(aead, header, prefix, index, current, final)
        if final:
            return
        current = following
        index += 1


class DecryptingReader(io.RawIOBase):
    """A seekable, read-only plaintext view of a blob, decrypting one chunk at a time.

    Pillow and pdfium need random access to decode a file; this gives it to them without ever
    writing plaintext anywhere. The plaintext size comes from the blob size, and the final flag
    of the last chunk is checked on every access to it, so truncation is still detected.
    """

    def __init__(self, key: bytes, source: BinaryIO, *, identity: tuple | None = None) -> None:
        super().__init__()
        # What the plaintext is, for in-process caches of what is derived from it: (department,
        # blob name) of a stored file, whose bytes never change; None for anything else.
        self.identity = identity
        self._aead = AESGCM(key)
        self._source = source
        self._header, self._chunk_size, self._prefix = _read_header(source)
        source.seek(0, io.SEEK_END)
        body = source.tell() - HEADER_SIZE
        sealed = self._chunk_size + TAG_SIZE
        self._chunks = max(1, -(-body // sealed))
        last = body - (self._chunks - 1) * sealed
        if last < TAG_SIZE:
            raise BlobIntegrityError("last chunk truncated")
        self._size = body - self._chunks * TAG_SIZE
        self._position = 0
        self._cached_index = -1
        self._cached = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    @property
    def size(self) -> int:
        return self._size

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self._size + offset
        else:
            raise ValueError("invalid whence")
        if position < 0:
            raise ValueError("negative seek position")
        self._position = position
        return position

    def _chunk(self, index: int) -> bytes:
        if index != self._cached_index:
            sealed_size = self._chunk_size + TAG_SIZE
            self._source.seek(HEADER_SIZE + index * sealed_size)
            sealed = self._source.read(sealed_size)
            final = index == self._chunks - 1
            self._cached = _open_chunk(self._aead, self._header, self._prefix, index, sealed, final)
            self._cached_index = index
        return self._cached

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        written = 0
        while written < len(view) and self._position < self._size:
            index, offset = divmod(self._position, self._chunk_size)
            chunk = self._chunk(index)
            take = min(len(chunk) - offset, len(view) - written)
            view[written : written + take] = chunk[offset : offset + take]
            written += take
            self._position += take
        return written

    def readall(self) -> bytes:
        parts = []
        while True:
            part = self.read(self._chunk_size)
            if not part:
                return b"".join(parts)
            parts.append(part)

    def close(self) -> None:
        self._cached = b""
        super().close()
