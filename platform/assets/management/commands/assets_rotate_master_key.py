"""Rotate the asset master key: re-wrap every file's data key; file contents are not touched.

manage.py assets_rotate_master_key --init        create the key ring (first installation)
manage.py assets_rotate_master_key --new-key     add a new active key, then re-wrap
manage.py assets_rotate_master_key               re-wrap with the ring's active (first) key
manage.py assets_rotate_master_key --new-key --retire
                                                 ... and drop keys no file uses any more
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count

from assets import keyring
from assets.models import Asset
from assets.services import asset_master_key_rotate
from departments.tenancy import all_departments


class Command(BaseCommand):
    help = "Re-wrap every asset data key with the active master key (optionally adding a new one first)."
    # The key ring system check would stop --init from creating the missing ring it reports.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--init", action="store_true", help="create the key ring file if it does not exist")
        parser.add_argument("--new-key", action="store_true", help="generate a new active key before re-wrapping")
        parser.add_argument("--retire", action="store_true", help="remove keys no data key is wrapped with any more")

    def handle(self, *args, init: bool, new_key: bool, retire: bool, **options):
        path = keyring.keyring_path()
        if init:
            if path.exists():
                raise CommandError(f"{path} already exists; use --new-key to rotate")
            key_id = keyring.keyring_add_active_key(path)
            self.stdout.write(f"created {path} with key {key_id} (mode 0600); back it up separately from the data")
            return
        if not path.exists():
            raise CommandError(f"{path} does not exist; create it with --init")
        if new_key:
            key_id = keyring.keyring_add_active_key(path)
            self.stdout.write(f"new active key {key_id}")
        result = asset_master_key_rotate(acting_user="system")
        ring = keyring.keyring_load()
        self.stdout.write(
            f"re-wrapped {result['rewrapped']} data keys with {ring.active_id}; "
            f"{result['remaining']} could not be unwrapped"
        )
        with all_departments(reason="report which master keys still wrap data keys"):
            in_use = dict(Asset.objects.values_list("key_id").annotate(n=Count("pk")).values_list("key_id", "n"))
        for key_id in ring.key_ids:
            self.stdout.write(
                f"  {key_id}: {in_use.get(key_id, 0)} files{' (active)' if key_id == ring.active_id else ''}"
            )
        if result["remaining"]:
            raise CommandError("some data keys could not be re-wrapped; the old keys were kept")
        if retire:
            unused = {key_id for key_id in ring.key_ids[1:] if not in_use.get(key_id)}
            if unused:
                keyring.keyring_remove_keys(unused, path)
                self.stdout.write(f"retired: {', '.join(sorted(unused))}")
