"""Damaged and oversized files for the hostile-input tests (IP-2), made in memory.

Each builder also has an intact twin (the same generator, nothing cut) so that a test can show
the refusal is about the damage and not about the file.
"""

from __future__ import annotations

import io
import os
import random
import struct
import zlib

from PIL import Image

from tests.assets.samples import pdf_of_objects

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """``(type, offset, length)`` of every chunk of a well-formed PNG."""
    chunks, position = [], len(PNG_SIGNATURE)
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        chunks.append((kind, position, length))
        position += 12 + length
    return chunks


def png_many_idat(size: tuple[int, int] = (256, 256)) -> bytes:
    """An incompressible PNG whose pixels span several IDAT chunks (Pillow writes 64 KiB ones)."""
    image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=0)
    data = buffer.getvalue()
    assert sum(kind == b"IDAT" for kind, _, _ in png_chunks(data)) > 2
    return data


def png_cuts(data: bytes) -> dict[str, bytes]:
    """The ways a PNG ends short: no IEND chunk at all, half of it, only its CRC missing, and the
    last IDAT chunk cut in the middle (IEND and everything after it gone)."""
    kind, offset, length = [chunk for chunk in png_chunks(data) if chunk[0] == b"IDAT"][-1]
    return {
        "IEND missing": data[:-12],
        "IEND cut in half": data[:-6],
        "IEND's CRC cut": data[:-2],
        "last IDAT cut": data[: offset + 8 + length // 2],
    }


def png_declaring(width: int, height: int) -> bytes:
    """A small, well-formed PNG whose header declares ``width`` x ``height`` grey pixels (and
    whose image data really holds them, compressed: decoding it would allocate them all)."""
    row = b"\x00" * (width + 1)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


# Seeds of ``jpeg()`` whose baseline file, cut just before its end-of-image marker, Pillow still
# decodes without complaint (libjpeg finished the last scan without reading further).
JPEG_SEEDS_PILLOW_ACCEPTS_WITHOUT_EOI = (2, 11)


def jpeg(size: tuple[int, int] = (300, 300), *, progressive: bool = False, seed: int = 0) -> bytes:
    """A JPEG of noise (random.Random(seed): the same bytes every run)."""
    image = Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, progressive=progressive)
    return buffer.getvalue()


def jpeg_cuts(data: bytes) -> dict[str, bytes]:
    assert data.endswith(b"\xff\xd9")
    return {"EOI missing": data[:-2], "last scan cut": data[: len(data) - len(data) // 5]}


def pdf_with_pages(pages: int, *, broken: frozenset[int] = frozenset()) -> bytes:
    """A PDF of ``pages`` pages written by hand; each page number in ``broken`` (1-based) is an
    object that is not a page dictionary. pdfium opens the file and counts every page, and fails
    only when such a page is loaded — as a PDF whose later pages are damaged does."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = b" ".join(b"%d 0 R" % (3 + index) for index in range(pages))
    objects.append(b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages)
    for number in range(1, pages + 1):
        if number in broken:
            objects.append(b"(this object is not a page)")
        else:
            objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >>")
    return pdf_of_objects(objects)
