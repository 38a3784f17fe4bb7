from django.db import migrations, models

from compliance.triggers import install_migration, remove_migration


class Migration(migrations.Migration):
    """A format version on every audit entry, pending or chained (compliance/chain.py's registry);
    entries already written are audit-v2. The triggers go first, since SQLite rebuilds both tables
    to add the column and would drop them, and come back in their current definitions: the
    sealer encoding each entry by its version, the pending row's version compared like every
    other column. Nothing in the trail changes: audit-v2's bytes and hashes stay as they were.

    Irreversible on purpose: once entries of a later version exist, the column is part of what
    their hashes cover.
    """

    dependencies = [
        ("compliance", "0006_reinstall_audit_functions"),
    ]

    operations = [
        migrations.RunPython(remove_migration),
        migrations.AddField(
            model_name="auditentry",
            name="format_version",
            field=models.PositiveSmallIntegerField(db_default=2, verbose_name="format version"),
        ),
        migrations.AddField(
            model_name="auditpending",
            name="format_version",
            field=models.PositiveSmallIntegerField(db_default=2, verbose_name="format version"),
        ),
        migrations.RunPython(install_migration),
    ]
