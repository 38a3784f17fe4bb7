"""SHA-256 manifest of a model directory: written by a command, verified before every load.

The manifest is a ``MANIFEST.sha256`` file in the model directory, in the format of
``sha256sum`` (``<hex>  <relative path>``, sorted by path) so an operator can also check it
by hand with ``sha256sum -c MANIFEST.sha256``. Every regular file in the directory must be
listed and match: a changed weight file, a missing file and an unlisted extra file (e.g. a
planted ``modeling_*.py``) all refuse the load. The manifest's own SHA-256 is the model's
identity in the audit trail and what ``MODEL_MANIFEST_SHA256`` pins.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from inference.engine.errors import (
    MANIFEST_EXTRA_FILE,
    MANIFEST_MALFORMED,
    MANIFEST_MISMATCH,
    MANIFEST_MISSING,
    MANIFEST_MISSING_FILE,
    ManifestError,
)

MANIFEST_NAME = "MANIFEST.sha256"
_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class VerifiedManifest:
    sha256: str  # of the manifest file itself
    files: dict[str, str]  # relative path -> sha256
    total_bytes: int


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _model_files(model_dir: Path) -> list[Path]:
    files = []
    for path in sorted(model_dir.rglob("*")):
        relative = path.relative_to(model_dir)
        if path.name == MANIFEST_NAME or any(part.startswith(".") for part in relative.parts):
            continue  # the manifest itself; hidden caches (.cache/, .ipynb_checkpoints) are not the model
        if path.is_file():
            files.append(path)
    return files


def manifest_text(model_dir: Path) -> str:
    model_dir = Path(model_dir)
    lines = [f"{file_sha256(path)}  {path.relative_to(model_dir).as_posix()}" for path in _model_files(model_dir)]
    return "\n".join(lines) + "\n"


def manifest_write(model_dir: Path) -> str:
    """Hash every file, write the manifest, return the manifest's own SHA-256."""
    text = manifest_text(model_dir)
    (Path(model_dir) / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _parse(text: str) -> dict[str, str]:
    files: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        digest, separator, name = line.partition("  ")
        if not separator or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest) or not name:
            raise ManifestError(MANIFEST_MALFORMED.format(line=number))
        if name.startswith("/") or ".." in Path(name).parts:
            raise ManifestError(MANIFEST_MALFORMED.format(line=number))
        files[name] = digest
    return files


def manifest_verify(model_dir: Path) -> VerifiedManifest:
    """Check every file against the manifest; raise ManifestError naming the first problem."""
    model_dir = Path(model_dir)
    manifest_path = model_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ManifestError(MANIFEST_MISSING.format(path=manifest_path))
    raw = manifest_path.read_bytes()
    listed = _parse(raw.decode("utf-8"))
    present = {path.relative_to(model_dir).as_posix(): path for path in _model_files(model_dir)}
    for name in sorted(set(present) - set(listed)):
        raise ManifestError(MANIFEST_EXTRA_FILE.format(name=name))
    total = 0
    for name, expected in sorted(listed.items()):
        path = present.get(name)
        if path is None:
            raise ManifestError(MANIFEST_MISSING_FILE.format(name=name))
        if file_sha256(path) != expected:
            raise ManifestError(MANIFEST_MISMATCH.format(name=name))
        total += path.stat().st_size
    return VerifiedManifest(sha256=hashlib.sha256(raw).hexdigest(), files=listed, total_bytes=total)
