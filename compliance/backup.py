"""Backup and restore of the database, the encrypted file store and the checkpoint log (BR-1).

A backup is a directory holding a consistent database copy (``pg_dump`` custom format, or the
SQLite online-backup API), a tar of ``DATA_DIR`` (encrypted blobs, checkpoint log, ...), and a
``MANIFEST.json`` with the SHA-256 of every file, itself covered by ``MANIFEST.sha256``.

Keys are left out on purpose (the Django secret key, the asset master key ring, the audit
signing key): a backup that carries its own decryption key protects nothing. Back them up
separately, offline (docs/operations.md).

Restore verifies every checksum before it touches anything. It never replaces an existing audit
checkpoint log: the log is append-only evidence that lives outside the database, so after an
*older* backup is restored, ``audit_verify`` compares the restored chain with the newer
checkpoints and reports the rollback.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import connections

MANIFEST = "MANIFEST.json"
MANIFEST_CHECKSUM = "MANIFEST.sha256"
DATA_ARCHIVE = "data.tar"
FORMAT = "platform-backup-v1"
BACKUP_CORRUPT = "Backup {path} is damaged: {detail}"
BACKUP_TARGET_EXISTS = "Refusing to overwrite {path}: choose a new output directory"


class BackupError(RuntimeError):
    pass


@dataclass(frozen=True)
class BackupResult:
    path: Path
    files: dict[str, str]
    audit_sequence: int


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _database() -> dict:
    return settings.DATABASES["default"]


def _is_sqlite() -> bool:
    return _database()["ENGINE"] == "django.db.backends.sqlite3"


def _pg_url() -> str:
    db = _database()
    from urllib.parse import quote

    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "localhost"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgresql://{auth}@{host}{port}/{quote(db['NAME'], safe='')}"


def secret_paths() -> set[Path]:
    """Files under DATA_DIR that are keys and never enter a backup."""
    candidates = [settings.DATA_DIR / "secret_key"]
    for name in ("ASSET_MASTER_KEY_FILE", "AUDIT_SIGNING_KEY_FILE"):
        value = getattr(settings, name, None)
        if value:
            candidates.append(Path(value))
    return {path.resolve() for path in candidates}


def checkpoint_log_path() -> Path | None:
    value = getattr(settings, "AUDIT_CHECKPOINT_LOG", None)
    return Path(value).resolve() if value else None


def _excluded(path: Path) -> bool:
    resolved = path.resolve()
    if resolved in secret_paths():
        return True
    if _is_sqlite() and resolved.name.startswith(Path(_database()["NAME"]).name):
        return True  # the live database file (and its -wal/-shm) is copied consistently instead
    model_dir = Path(settings.MODEL_PATH).resolve()
    return resolved == model_dir or model_dir in resolved.parents


def _archive_data_dir(target: Path) -> None:
    data_dir = Path(settings.DATA_DIR).resolve()
    with tarfile.open(target, "w") as archive:
        for root, dirs, files in os.walk(data_dir):
            root_path = Path(root)
            dirs[:] = sorted(d for d in dirs if not _excluded(root_path / d))
            for name in sorted(files):
                path = root_path / name
                if not _excluded(path) and path.is_file():
                    archive.add(path, arcname=str(path.relative_to(data_dir)), recursive=False)


def backup_create(*, output: Path) -> BackupResult:
    from compliance.models import AuditChainHead

    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise BackupError(BACKUP_TARGET_EXISTS.format(path=output))
    output.mkdir(parents=True, exist_ok=True)
    head = AuditChainHead.objects.get(pk=1)
    if _is_sqlite():
        database_file = output / "database.sqlite3"
        connection = connections["default"]
        connection.ensure_connection()
        destination = sqlite3.connect(database_file)
        try:
            connection.connection.backup(destination)
        finally:
            destination.close()
    else:
        database_file = output / "database.pgdump"
        subprocess.run(
            [
                "pg_dump",
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                f"--dbname={_pg_url()}",
                f"--file={database_file}",
            ],
            check=True,
            capture_output=True,
        )
    _archive_data_dir(output / DATA_ARCHIVE)
    files = {path.name: _sha256(path) for path in sorted(output.iterdir()) if path.is_file()}
    manifest = {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(),
        "database": "sqlite" if _is_sqlite() else "postgresql",
        "audit_head": {"sequence": head.sequence, "hash": head.hash},
        "files": files,
    }
    manifest_path = output / MANIFEST
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    (output / MANIFEST_CHECKSUM).write_text(f"{_sha256(manifest_path)}  {MANIFEST}\n", encoding="utf-8")
    return BackupResult(path=output, files=files, audit_sequence=head.sequence)


def backup_verify(path: Path) -> dict:
    """The manifest, once every checksum has been checked; BackupError otherwise."""
    path = Path(path)
    manifest_path = path / MANIFEST
    try:
        expected = (path / MANIFEST_CHECKSUM).read_text(encoding="utf-8").split()[0]
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, IndexError) as exc:
        raise BackupError(BACKUP_CORRUPT.format(path=path, detail=f"manifest unreadable ({exc})")) from None
    if _sha256(manifest_path) != expected:
        raise BackupError(BACKUP_CORRUPT.format(path=path, detail="MANIFEST.json does not match its checksum"))
    if manifest.get("format") != FORMAT:
        raise BackupError(BACKUP_CORRUPT.format(path=path, detail=f"unknown format {manifest.get('format')!r}"))
    for name, digest in manifest["files"].items():
        file_path = path / name
        if not file_path.is_file():
            raise BackupError(BACKUP_CORRUPT.format(path=path, detail=f"{name} is missing"))
        if _sha256(file_path) != digest:
            raise BackupError(BACKUP_CORRUPT.format(path=path, detail=f"{name} does not match its checksum"))
    return manifest


def _restore_data_dir(archive_path: Path) -> None:
    data_dir = Path(settings.DATA_DIR).resolve()
    keep = checkpoint_log_path()
    with tarfile.open(archive_path) as archive:
        members = archive.getmembers()
        for member in members:
            target = (data_dir / member.name).resolve()
            if data_dir not in target.parents or not (member.isfile() or member.isdir()):
                raise BackupError(BACKUP_CORRUPT.format(path=archive_path, detail=f"unsafe entry {member.name!r}"))
        with tempfile.TemporaryDirectory(dir=data_dir) as staging:
            archive.extractall(staging, filter="data")
            for source in sorted(Path(staging).rglob("*")):
                if not source.is_file():
                    continue
                target = data_dir / source.relative_to(staging)
                if keep is not None and target.resolve() == keep and target.exists():
                    continue  # the newer evidence wins: see the module docstring
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)


def backup_restore(*, path: Path) -> dict:
    manifest = backup_verify(path)
    path = Path(path)
    database = manifest["database"]
    if database != ("sqlite" if _is_sqlite() else "postgresql"):
        raise BackupError(f"This backup holds a {database} database; the platform is configured for another")
    connections.close_all()
    if _is_sqlite():
        live = Path(_database()["NAME"])
        for suffix in ("-wal", "-shm"):
            Path(f"{live}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(path / "database.sqlite3", live)
    else:
        subprocess.run(
            [
                "pg_restore",
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                f"--dbname={_pg_url()}",
                str(path / "database.pgdump"),
            ],
            check=True,
            capture_output=True,
        )
    _restore_data_dir(path / DATA_ARCHIVE)
    return manifest
