"""Remove expired business data per department policy, then audit entries past retention."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from compliance.retention import purge_expired


class Command(BaseCommand):
    help = (
        "Purge business data older than each department's retention policy (legal hold respected) "
        "and audit entries older than AUDIT_RETENTION_DAYS that were exported. Idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="report what would be removed, remove nothing")
        parser.add_argument("--skip-audit", action="store_true", help="leave the audit trail alone")

    def handle(self, **options):
        dry_run = options["dry_run"]
        report = purge_expired(dry_run=dry_run, include_audit=not options["skip_audit"])
        verb = "would remove" if dry_run else "removed"
        for slug, counts in report.business.items():
            for name, count in counts.items():
                self.stdout.write(f"{slug}: {name}: {verb} {count}")
        for slug in report.held:
            self.stdout.write(f"{slug}: legal hold, nothing purged")
        if report.audit_removed:
            self.stdout.write(f"audit trail: {verb} {report.audit_removed} entries up to {report.audit_anchor}")
        else:
            self.stdout.write("audit trail: nothing to purge (too young, or not yet exported)")
        self.stdout.write(f"business data: {verb} {report.business_total} objects in total")
