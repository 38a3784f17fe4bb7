from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from compliance.backup import BackupError, backup_restore, backup_verify
from compliance.events import EventType
from compliance.services import audit_record

RESTORE_NEEDS_CONFIRMATION = "Restoring replaces the database and the file store; run again with --yes to go ahead."


class Command(BaseCommand):
    help = "Verify a backup's checksums and restore it (the database and the file store are replaced)."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path)
        parser.add_argument("--yes", action="store_true", help="confirm that current data is to be replaced")
        parser.add_argument("--verify-only", action="store_true", help="check the checksums and stop")

    def handle(self, *args, path: Path, yes: bool, verify_only: bool, **options):
        try:
            if verify_only:
                manifest = backup_verify(path)
                self.stdout.write(f"Backup {path} is intact ({len(manifest['files'])} files)")
                return
            if not yes:
                raise CommandError(RESTORE_NEEDS_CONFIRMATION)
            manifest = backup_restore(path=path)
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        # Recorded in the restored chain, so the restore itself is part of the evidence.
        audit_record(
            event_type=EventType.RESTORE,
            object_type="backup",
            object_repr=str(path)[:255],
            details={"created": manifest["created"], "audit_head": manifest["audit_head"]},
        )
        self.stdout.write(
            f"Restored {path} (taken {manifest['created']}, audit chain up to #{manifest['audit_head']['sequence']}). "
            "Run `manage.py audit_verify` now: it reports a rollback if newer checkpoints exist."
        )
