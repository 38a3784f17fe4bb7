"""Sign a checkpoint of the audit chain head (run it from cron or a systemd timer)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from compliance.checkpoints import checkpoint_create, log_path


class Command(BaseCommand):
    help = "Append a signed checkpoint (sequence, hash, time) of the audit chain to the checkpoint log."

    def handle(self, **options):
        checkpoint = checkpoint_create(reason="scheduled")
        self.stdout.write(
            f"checkpoint at entry {checkpoint.sequence} ({checkpoint.hash[:16]}…) signed by key {checkpoint.key_id}, "
            f"appended to {log_path()}"
        )
