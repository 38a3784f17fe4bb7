"""Recompute the audit chain and check it against the signed checkpoints.

Exit status 0 when intact (the verified range is printed); 1 naming the first bad sequence
number and the kind of break otherwise (a missing table, head row or checkpoint log included);
3 when the chain is intact but holds back-dated entries (listed: compliance/verification.py).
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from compliance.verification import BACKDATING_TOLERANCE, audit_chain_verify

EXIT_BROKEN = 1
EXIT_BACKDATED = 3


class Command(BaseCommand):
    help = (
        "Verify the audit chain and the signed checkpoints (exit 1 on any break, "
        "3 when the chain is intact but holds back-dated entries)."
    )

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
                        "backdated_count": result.backdated_count,
                        "backdated": [entry._asdict() for entry in result.backdated],
                    }
                )
            )
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        if not result.ok:
            # A missing table or head row has no entry to name.
            where = "" if result.break_sequence is None else f" at entry {result.break_sequence}"
            raise CommandError(
                f"audit chain BROKEN{where}: {result.break_kind}: {result.message}", returncode=EXIT_BROKEN
            )
        if not options["json"]:
            self.stdout.write(f"audit chain intact: {result.message}")
            if result.anchor_sequence is not None:
                self.stdout.write(f"continues from the purge anchor after entry {result.anchor_sequence}")
            self.stdout.write(
                f"checkpoints: {result.checkpoints_valid} validly signed, {result.checkpoints_matched} matched"
                + (f"; latest at entry {latest.sequence} ({latest.time})" if latest else "")
            )
        if result.backdated_count:
            for entry in result.backdated:
                self.stderr.write(
                    f"back-dated: entry {entry.sequence} says {entry.timestamp}, but was chained after a seal at "
                    f"{entry.sealed_after} (database clock) that took every entry committed by then"
                )
            raise CommandError(
                f"{result.backdated_count} audit entries BACKDATED (own time more than "
                f"{BACKDATING_TOLERANCE.total_seconds() / 60:g} minutes before the seal they followed): "
                "they were inserted into the pending table with a time in the past",
                returncode=EXIT_BACKDATED,
            )
