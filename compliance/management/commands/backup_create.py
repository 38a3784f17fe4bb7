from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from compliance.backup import BackupError, backup_create
from compliance.events import EventType
from compliance.services import audit_record


class Command(BaseCommand):
    help = "Back up the database, the encrypted file store and the checkpoint log into a new directory."

    def add_arguments(self, parser):
        parser.add_argument("--output", required=True, type=Path, help="a new (or empty) directory")

    def handle(self, *args, output: Path, **options):
        try:
            result = backup_create(output=output)
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        audit_record(
            event_type=EventType.BACKUP,
            object_type="backup",
            object_repr=str(result.path)[:255],
            details={"files": result.files, "audit_sequence": result.audit_sequence},
        )
        self.stdout.write(f"Backup written to {result.path} (audit chain up to #{result.audit_sequence})")
