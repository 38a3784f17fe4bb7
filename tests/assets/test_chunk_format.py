"""Property tests of the encrypted chunk format: round-trip, and any tampering is detected."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assets.chunk_format import (
    HEADER_SIZE,
    TAG_SIZE,
    BlobIntegrityError,
    ChunkEncryptor,
    DecryptingReader,
    ciphertext_size,
    decrypt_chunks,
    new_data_key,
)

KEY = new_data_key()
CHUNK_SIZES = st.sampled_from([1, 7, 64, 1000])
PLAINTEXTS = st.binary(min_size=0, max_size=3000)


def encrypt(data: bytes, chunk_size: int, key: bytes = KEY, pieces: list[int] | None = None) -> bytes:
    sink = io.BytesIO()
    encryptor = ChunkEncryptor(key, sink, chunk_size=chunk_size)
    position = 0
    for piece in pieces or [len(data)]:
        encryptor.write(data[position : position + piece])
        position += piece
    encryptor.write(data[position:])
    encryptor.finish()
    return sink.getvalue()


def decrypt(blob: bytes, key: bytes = KEY) -> bytes:
    return b"".join(decrypt_chunks(key, io.BytesIO(blob)))


@settings(max_examples=150, deadline=None)
@given(PLAINTEXTS, CHUNK_SIZES, st.lists(st.integers(0, 500), max_size=8))
def test_round_trip_whatever_the_write_pattern(data, chunk_size, pieces):
    blob = encrypt(data, chunk_size, pieces=pieces)
    assert len(blob) == ciphertext_size(len(data), chunk_size)
    assert decrypt(blob) == data
    with DecryptingReader(KEY, io.BytesIO(blob)) as reader:
        assert reader.size == len(data)
        assert reader.read() == data


@settings(max_examples=150, deadline=None)
@given(PLAINTEXTS, CHUNK_SIZES, st.data())
def test_any_flipped_bit_is_detected(data, chunk_size, draw):
    blob = bytearray(encrypt(data, chunk_size))
    position = draw.draw(st.integers(0, len(blob) - 1))
    blob[position] ^= 1 << draw.draw(st.integers(0, 7))
    with pytest.raises(BlobIntegrityError):
        decrypt(bytes(blob))


@settings(max_examples=150, deadline=None)
@given(PLAINTEXTS, CHUNK_SIZES, st.data())
def test_any_dropped_byte_is_detected(data, chunk_size, draw):
    blob = encrypt(data, chunk_size)
    position = draw.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(BlobIntegrityError):
        decrypt(blob[:position] + blob[position + 1 :])


@settings(max_examples=150, deadline=None)
@given(PLAINTEXTS, CHUNK_SIZES, st.data())
def test_any_truncation_is_detected_even_at_a_chunk_boundary(data, chunk_size, draw):
    blob = encrypt(data, chunk_size)
    cut = draw.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(BlobIntegrityError):
        decrypt(blob[:cut])


@settings(max_examples=100, deadline=None)
@given(PLAINTEXTS, CHUNK_SIZES, st.binary(min_size=1, max_size=100))
def test_appended_bytes_are_detected(data, chunk_size, extra):
    with pytest.raises(BlobIntegrityError):
        decrypt(encrypt(data, chunk_size) + extra)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=3, max_size=400), st.data())
def test_reordered_chunks_are_detected(data, draw):
    chunk_size = 1
    blob = encrypt(data, chunk_size)
    sealed = chunk_size + TAG_SIZE
    chunks = [blob[i : i + sealed] for i in range(HEADER_SIZE, len(blob), sealed)]
    first = draw.draw(st.integers(0, len(chunks) - 2))
    second = draw.draw(st.integers(first + 1, len(chunks) - 1))
    chunks[first], chunks[second] = chunks[second], chunks[first]
    with pytest.raises(BlobIntegrityError):
        decrypt(blob[:HEADER_SIZE] + b"".join(chunks))


def test_whole_chunks_dropped_at_the_end_are_detected():
    data = bytes(range(256)) * 10
    blob = encrypt(data, 256)
    sealed = 256 + TAG_SIZE
    for keep in range(1, 10):
        with pytest.raises(BlobIntegrityError):
            decrypt(blob[: HEADER_SIZE + keep * sealed])


def test_wrong_key_is_detected():
    with pytest.raises(BlobIntegrityError):
        decrypt(encrypt(b"secret", 64), key=new_data_key())


def test_same_plaintext_twice_gives_different_blobs():
    assert encrypt(b"x" * 100, 64) != encrypt(b"x" * 100, 64)


@settings(max_examples=60, deadline=None)
@given(
    st.binary(min_size=1, max_size=2000), CHUNK_SIZES, st.lists(st.tuples(st.integers(0, 2100), st.integers(0, 300)))
)
def test_random_access_reads_match_the_plaintext(data, chunk_size, reads):
    with DecryptingReader(KEY, io.BytesIO(encrypt(data, chunk_size))) as reader:
        for offset, length in reads:
            reader.seek(offset)
            assert reader.read(length) == data[offset : offset + length]
