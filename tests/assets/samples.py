"""Small real files of every accepted format (and hostile ones), generated in memory."""

from __future__ import annotations

import io
import struct
import zlib

import pypdfium2 as pdfium
from PIL import Image, PngImagePlugin

MARKER = b"PLAINTEXT-MARKER-7f3a9c1e-do-not-store-in-clear"


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48), *, mode: str = "RGB", **save) -> bytes:
    image = Image.new(mode, size, color=(200, 30, 60) if mode == "RGB" else 128)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def png_with_marker(size: tuple[int, int] = (32, 32)) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", MARKER.decode())  # tEXt: stored uncompressed in the file
    return image_bytes("PNG", size, pnginfo=info)


def noisy_png(size: tuple[int, int]) -> bytes:
    """A PNG that does not compress (random-looking pixels), for size limits."""
    import os

    image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def pdf_bytes(pages: int = 1, size: tuple[float, float] = (200, 100)) -> bytes:
    document = pdfium.PdfDocument.new()
    for _ in range(pages):
        document.new_page(*size).close()
    return pdf_document_bytes(document)


def pdf_document_bytes(document: pdfium.PdfDocument) -> bytes:
    """The bytes of a pypdfium2 document as it saves them; the document is closed."""
    buffer = io.BytesIO()
    document.save(buffer)
    document.close()
    return buffer.getvalue()


def pdf_many_pages(pages: int) -> bytes:
    """A valid PDF with ``pages`` empty pages, written by hand (fast for thousands)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = b" ".join(b"%d 0 R" % (3 + index) for index in range(pages))
    objects.append(b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages)
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >>"] * pages
    return pdf_of_objects(objects)


def pdf_of_objects(objects: list[bytes]) -> bytes:
    """A PDF written by hand: ``objects`` numbered from 1 (the first the catalogue), an xref
    table and a trailer."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG that claims (and really holds, compressed) width x height grey pixels."""
    raw_row = b"\x00" + b"\x00" * width
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(raw_row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def zip_bytes() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("payload.html", "<html><script>alert(1)</script></html>")
    return buffer.getvalue()
