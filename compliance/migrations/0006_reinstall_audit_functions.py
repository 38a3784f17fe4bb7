from django.db import migrations

from compliance.triggers import reinstall_migration


class Migration(migrations.Migration):
    """Re-installs the audit triggers and database functions (compliance/triggers.py) so that a
    database migrated earlier gets their current definitions: the sealer's mark sequence and the
    writers' backlog check that uses it. Nothing in the trail changes."""

    dependencies = [
        ("compliance", "0005_pending_entries_text_fields"),
    ]

    operations = [
        migrations.RunPython(reinstall_migration, reinstall_migration),
    ]
