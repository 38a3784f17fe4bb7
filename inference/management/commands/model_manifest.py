"""Write or check the SHA-256 manifest of the model directory (MODEL_PATH by default)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from inference.engine.errors import ManifestError
from inference.engine.manifest import MANIFEST_NAME, manifest_verify, manifest_write


class Command(BaseCommand):
    help = (
        f"Write ({MANIFEST_NAME}) or verify the SHA-256 manifest of a model directory. "
        "Review the files first: writing the manifest vouches for them."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--path", type=Path, default=None, help="model directory (default: MODEL_PATH)")
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--write", action="store_true", help="hash every file and write the manifest")
        action.add_argument("--verify", action="store_true", help="check every file against the manifest")

    def handle(self, *args, path: Path | None, write: bool, verify: bool, **options):
        model_dir = Path(path or settings.MODEL_PATH)
        if not model_dir.is_dir():
            raise CommandError(f"{model_dir} is not a directory")
        if write:
            digest = manifest_write(model_dir)
            self.stdout.write(self.style.SUCCESS(f"Wrote {model_dir / MANIFEST_NAME}; manifest sha256 {digest}"))
            self.stdout.write(f"To pin it (required with MODEL_TRUST_REMOTE_CODE): MODEL_MANIFEST_SHA256={digest}")
            return
        try:
            verified = manifest_verify(model_dir)
        except ManifestError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(f"{len(verified.files)} files match the manifest; manifest sha256 {verified.sha256}")
        )
