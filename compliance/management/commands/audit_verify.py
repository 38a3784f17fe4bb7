"""Recompute the audit chain and check it against the signed checkpoints.

Exit status 0 when intact (the verified range is printed); 1 naming the first bad sequence
number and the kind of break otherwise.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from compliance.verification import audit_chain_verify


class Command(BaseCommand):
    help = "Verify the audit chain and the signed checkpoints (exit 1 on any break)."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print the result as one JSON object")

    def handle(self, **options):
        result = audit_chain_verify()
        latest = result.latest_checkpoint
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "ok": result.ok,
                        "first_sequence": result.first_sequence,
                        "last_sequence": result.last_sequence,
                        "entries": result.entries,
                        "break_kind": result.break_kind,
                        "break_sequence": result.break_sequence,
                        "message": result.message,
                        "checkpoints_valid": result.checkpoints_valid,
                        "checkpoints_matched": result.checkpoints_matched,
                        "latest_checkpoint": latest.as_json() if latest else None,
                        "anchor_sequence": result.anchor_sequence,
                        "warnings": result.warnings,
                    }
                )
            )
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        if not result.ok:
            raise CommandError(
                f"audit chain BROKEN at entry {result.break_sequence}: {result.break_kind}: {result.message}",
                returncode=1,
            )
        if not options["json"]:
            self.stdout.write(f"audit chain intact: {result.message}")
            if result.anchor_sequence is not None:
                self.stdout.write(f"continues from the purge anchor after entry {result.anchor_sequence}")
            self.stdout.write(
                f"checkpoints: {result.checkpoints_valid} validly signed, {result.checkpoints_matched} matched"
                + (f"; latest at entry {latest.sequence} ({latest.time})" if latest else "")
            )
