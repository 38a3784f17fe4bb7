"""Rotate the audit checkpoint signing key (docs/audit.md, "Rotating the signing key")."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from compliance.checkpoints import checkpoint_key_rotate, log_path


class Command(BaseCommand):
    help = (
        "Retire the audit checkpoint signing key for a new one: audited, the old key signs its last "
        "checkpoint, both keys sign a key_rotation line, and the new key replaces the old one in "
        "AUDIT_SIGNING_KEY_FILE. Old checkpoints keep verifying."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--new-key",
            type=Path,
            help="the new Ed25519 private key (PEM, e.g. made with 'openssl genpkey -algorithm ed25519'); "
            "a fresh key is generated when left out",
        )

    def handle(self, *, new_key: Path | None, **options):
        try:
            pem = new_key.read_bytes() if new_key else None
        except OSError as exc:
            raise CommandError(f"--new-key {new_key}: {exc.strerror}") from None
        try:
            rotation = checkpoint_key_rotate(new_key_pem=pem)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"signing key {rotation.previous_key_id} retired at entry {rotation.sequence}; "
            f"key {rotation.key_id} signs from now on (rotation line appended to {log_path()})"
        )
        if new_key:
            self.stdout.write(f"the new key was copied into the key file: remove {new_key}")
