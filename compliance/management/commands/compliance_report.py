from pathlib import Path

from django.core.management.base import BaseCommand

from compliance.report import FAIL, compliance_report_export


class Command(BaseCommand):
    help = "Check every MLPS 2.0 Level 3 control live and print (or write) the report; recorded in the audit trail."

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=("md", "json", "html"), default="md")
        parser.add_argument("--output", type=Path, help="write to this file instead of standard output")
        parser.add_argument("--fail-on-fail", action="store_true", help="exit 1 when any control fails")

    def handle(self, *args, format: str, output: Path | None, fail_on_fail: bool, **options):
        report, text, digest = compliance_report_export(fmt=format, acting_user="system")
        if output:
            output.write_text(text, encoding="utf-8")
            self.stderr.write(f"Report written to {output} (SHA-256 {digest})")
        else:
            self.stdout.write(text)
            self.stderr.write(f"SHA-256 {digest}")
        if fail_on_fail and report.summary[FAIL]:
            raise SystemExit(1)
