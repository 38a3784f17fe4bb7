"""The record of chain verifications started from the auditor console
(compliance/verify_runs.py). A new table, outside the audit trail: no audit table is touched.

Its model lives in a registry of its own (compliance.verify_runs.RUN_APPS), so the table is
created here without entering the project's migration state."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0010_audit_preview_key"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.CreateModel(
                    name="AuditVerifyRun",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                        ("requested_by_id", models.CharField(max_length=64)),
                        ("requested_by_name", models.CharField(max_length=150)),
                        ("requested_at", models.DateTimeField()),
                        ("request_id", models.CharField(blank=True, max_length=64)),
                        ("state", models.CharField(default="queued", max_length=16)),
                        ("process", models.CharField(blank=True, max_length=255)),
                        ("head_sequence", models.BigIntegerField(default=0)),
                        ("started_at", models.DateTimeField(null=True)),
                        ("finished_at", models.DateTimeField(null=True)),
                        ("ok", models.BooleanField(null=True)),
                        ("break_kind", models.CharField(blank=True, max_length=32)),
                        ("break_sequence", models.BigIntegerField(null=True)),
                        ("first_sequence", models.BigIntegerField(null=True)),
                        ("last_sequence", models.BigIntegerField(null=True)),
                        ("entries", models.BigIntegerField(default=0)),
                        ("checkpoints_matched", models.IntegerField(default=0)),
                        ("backdated_count", models.IntegerField(default=0)),
                        ("message", models.TextField(blank=True)),
                        ("warnings", models.JSONField(default=list)),
                    ],
                    options={"db_table": "compliance_auditverifyrun"},
                ),
            ],
            state_operations=[],
        ),
    ]
