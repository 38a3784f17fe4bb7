"""Export the audit trail (streamed) with a manifest and a signed checkpoint."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from compliance.export import FORMATS, ExportError, audit_export
from departments.models import Department


def _moment(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(
            f"{text!r} is not an ISO date or date-time (e.g. 2026-01-31 or 2026-01-31T08:00+08:00)"
        ) from None
    return timezone.make_aware(value) if timezone.is_naive(value) else value


class Command(BaseCommand):
    help = "Export audit entries to JSON lines or CSV, with a manifest (SHA-256, range, signed checkpoint)."

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=FORMATS, default="jsonl")
        parser.add_argument("--output", required=True, type=Path)
        parser.add_argument("--since", type=_moment, help="entries at or after this time (server time zone if naive)")
        parser.add_argument("--until", type=_moment, help="entries before this time")
        parser.add_argument("--department", help="department slug (platform events are then left out)")

    def handle(self, **options):
        department = None
        if options["department"]:
            department = Department.objects.filter(slug=options["department"]).first()
            if department is None:
                raise CommandError(f"no department with slug {options['department']!r}")
        try:
            result = audit_export(
                output=options["output"],
                format=options["format"],
                since=options["since"],
                until=options["until"],
                department=department,
            )
        except ExportError as exc:
            raise CommandError(str(exc)) from exc
        span = f"{result.first_sequence}..{result.last_sequence}" if result.entries else "nothing"
        self.stdout.write(
            f"exported {result.entries} entries ({span}) to {result.path}\n"
            f"sha256 {result.sha256}\nmanifest {result.manifest_path}"
            + ("\ncomplete range: usable as the archive for the retention purge" if result.complete else "")
        )
