import compliance.models
from django.db import migrations, models

from compliance.triggers import install_migration, remove_migration

TRAIL_NOT_EMPTY = (
    "This migration changes the audit hash format (audit-v1 -> audit-v2) and how entries are "
    "stored. An existing trail cannot be converted: it is immutable, and re-hashing it would be "
    "exactly the rewrite audit_verify exists to catch. audit-v1 only ever existed in pre-release "
    "development databases: export the trail with the previous version (manage.py audit_export) "
    "if you need it, then start from a new database."
)


# The triggers 0004 installed, by name (frozen here: compliance/triggers.py moves on).
_V1_POSTGRESQL = [
    *(
        f"DROP TRIGGER IF EXISTS {table}_{kind} ON {table}"
        for table in ("compliance_auditentry", "compliance_auditchainhead", "compliance_auditarchive", "compliance_auditanchor")
        for kind in ("guard", "truncate")
    ),
    "DROP FUNCTION IF EXISTS compliance_audit_entry_guard()",
    "DROP FUNCTION IF EXISTS compliance_audit_head_guard()",
    "DROP FUNCTION IF EXISTS compliance_append_only_refuse()",
]
_V1_SQLITE = [
    f"DROP TRIGGER IF EXISTS {name}"
    for name in (
        "compliance_auditentry_no_update",
        "compliance_auditentry_delete",
        "compliance_auditentry_insert",
        "compliance_auditchainhead_update",
        "compliance_auditchainhead_delete",
        "compliance_auditarchive_update",
        "compliance_auditarchive_delete",
        "compliance_auditanchor_update",
        "compliance_auditanchor_delete",
    )
]


def remove_v1_triggers(apps, schema_editor):
    statements = _V1_POSTGRESQL if schema_editor.connection.vendor == "postgresql" else _V1_SQLITE
    with schema_editor.connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def refuse_existing_trail(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM compliance_auditentry LIMIT 1")
        if cursor.fetchone() is not None:
            raise RuntimeError(TRAIL_NOT_EMPTY)


class Migration(migrations.Migration):
    """Pending entries (compliance/sealing.py), details and address stored as the hashed text,
    and the triggers for both; the trail must be empty (see TRAIL_NOT_EMPTY)."""

    dependencies = [
        ("compliance", "0004_immutability_triggers"),
    ]

    operations = [
        migrations.RunPython(refuse_existing_trail, migrations.RunPython.noop),
        migrations.RunPython(remove_v1_triggers, migrations.RunPython.noop),
        migrations.CreateModel(
            name="AuditPending",
            fields=[
                (
                    "actor_type",
                    models.CharField(
                        choices=[
                            ("user", "User"),
                            ("api_key", "API key"),
                            ("system", "System"),
                            ("anonymous", "Anonymous"),
                        ],
                        max_length=16,
                        verbose_name="actor type",
                    ),
                ),
                ("actor_id", models.CharField(blank=True, max_length=64, verbose_name="actor id")),
                ("actor_name", models.CharField(blank=True, max_length=150, verbose_name="actor")),
                ("department_id", models.BigIntegerField(blank=True, null=True, verbose_name="department id")),
                ("department_slug", models.CharField(blank=True, max_length=50, verbose_name="department")),
                ("event_type", models.CharField(max_length=64, verbose_name="event type")),
                (
                    "outcome",
                    models.CharField(
                        choices=[("success", "Success"), ("failure", "Failure"), ("denied", "Denied")],
                        max_length=16,
                        verbose_name="outcome",
                    ),
                ),
                ("object_type", models.CharField(blank=True, max_length=64, verbose_name="object type")),
                ("object_id", models.CharField(blank=True, max_length=64, verbose_name="object id")),
                ("object_repr", models.CharField(blank=True, max_length=255, verbose_name="object")),
                ("source_ip", models.CharField(blank=True, max_length=45, null=True, verbose_name="source address")),
                ("user_agent", models.CharField(blank=True, max_length=512, verbose_name="user agent")),
                ("details", compliance.models.CanonicalJSONField(blank=True, default=dict, verbose_name="details")),
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("timestamp", models.DateTimeField(verbose_name="time (UTC)")),
                ("request_id", models.CharField(blank=True, max_length=64, verbose_name="request id")),
            ],
            options={
                "verbose_name": "pending audit entry",
                "verbose_name_plural": "pending audit entries",
                "ordering": ["id"],
            },
        ),
        migrations.AlterField(
            model_name="auditentry",
            name="details",
            field=compliance.models.CanonicalJSONField(blank=True, default=dict, verbose_name="details"),
        ),
        migrations.AlterField(
            model_name="auditentry",
            name="source_ip",
            field=models.CharField(blank=True, max_length=45, null=True, verbose_name="source address"),
        ),
        migrations.AddConstraint(
            model_name="auditentry",
            constraint=models.CheckConstraint(
                condition=models.Q(("source_ip", ""), _negated=True), name="audit_entry_source_ip_not_empty"
            ),
        ),
        migrations.AddConstraint(
            model_name="auditpending",
            constraint=models.CheckConstraint(
                condition=models.Q(("source_ip", ""), _negated=True), name="audit_pending_source_ip_not_empty"
            ),
        ),
        migrations.AlterField(
            model_name="auditentry",
            name="hash",
            field=models.CharField(max_length=64, verbose_name="hash"),
        ),
        migrations.RunPython(install_migration, remove_migration),
    ]
