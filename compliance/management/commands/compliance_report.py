from pathlib import Path

from django.core.management.base import BaseCommand

from compliance.report import FAIL, FORMATS, LANGUAGES, compliance_report_export


class Command(BaseCommand):
    help = (
        "Check every MLPS 2.0 Level 3 control live and print (or write) the report, in Chinese (default) or "
        "English; recorded in the audit trail. States: pass, fail, manual (the assessor looks), n/a."
    )

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=FORMATS, default="md")
        parser.add_argument("--language", choices=LANGUAGES, help="default: the installation's LANGUAGE_CODE")
        parser.add_argument("--output", type=Path, help="write to this file instead of standard output")
        parser.add_argument("--fail-on-fail", action="store_true", help="exit 1 when any control fails")

    def handle(self, *args, format: str, language: str | None, output: Path | None, fail_on_fail: bool, **options):
        report, text, digest = compliance_report_export(fmt=format, acting_user="system", language=language)
        if output:
            output.write_text(text, encoding="utf-8")
            self.stderr.write(f"Report written to {output} (SHA-256 {digest})")
        else:
            self.stdout.write(text)
            self.stderr.write(f"SHA-256 {digest}")
        if fail_on_fail and report.summary[FAIL]:
            raise SystemExit(1)
