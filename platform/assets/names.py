"""Original file names: refused when they carry a trick, kept only as metadata, sanitised again
for the download header (RFC 6266 ``filename*`` with an ASCII fallback).

A browser sends a bare file name; a name with a path, a NUL, control or bidi characters, or a
look-alike separator is somebody probing, so it is refused with a clear error rather than
silently repaired. Nothing on disk is ever named after it: blobs carry random storage names.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from assets import rejections
from assets.content import Kind

MAX_NAME_LENGTH = 200
_DRIVE = re.compile(r"^[A-Za-z]:")
_FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_EXTENSION_ALIASES = {"jpg": {"jpg", "jpeg"}, "tiff": {"tiff", "tif"}}
_ASCII_UNSAFE = re.compile(r"[^A-Za-z0-9._() -]+")


def original_name_clean(name: str) -> str:
    """The name to keep (NFC), or AssetRejected(bad_name) for a path or a trick."""
    if not isinstance(name, str):
        raise rejections.bad_name()
    name = unicodedata.normalize("NFC", name).strip()
    # Compare on the compatibility form too: a full-width solidus or dot counts as the real one.
    folded = unicodedata.normalize("NFKC", name)
    if (
        not name
        or any(unicodedata.category(char) in _FORBIDDEN_CATEGORIES for char in name)
        or any(separator in text for separator in ("/", "\\") for text in (name, folded))
        or folded.strip(". ") == ""
        or _DRIVE.match(folded)
    ):
        raise rejections.bad_name()
    if len(name) > MAX_NAME_LENGTH:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            name = stem[: MAX_NAME_LENGTH - len(extension) - 1] + "." + extension
        else:
            name = name[:MAX_NAME_LENGTH]
    return name


def download_name(original_name: str, kind: Kind) -> str:
    """The name offered on download: the original, with the extension of the detected type
    appended unless it already has it (so ``report.html`` that is really a PNG saves as
    ``report.html.png`` and opens as an image)."""
    name = original_name.strip() or "file"
    if "." not in name or name.rpartition(".")[2].lower() not in _EXTENSION_ALIASES.get(
        kind.extension, {kind.extension}
    ):
        name = f"{name}.{kind.extension}"
    return name


def content_disposition(name: str) -> str:
    """``attachment`` with an ASCII fallback and the exact UTF-8 name (RFC 6266 / RFC 5987)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    ascii_name = _ASCII_UNSAFE.sub("_", ascii_name).strip(" .") or "file"
    stem, dot, extension = name.rpartition(".")
    if dot and not ascii_name.lower().endswith("." + extension.lower()) and extension.isascii():
        ascii_name = f"{ascii_name}.{extension}"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
