from django.db import migrations, models

from compliance.triggers import install_migration, remove_migration


class Migration(migrations.Migration):
    """The sealing clock (audit-v4, compliance/chain.py): each entry chained from now on carries
    the database's clock at sealing, inside its hash. A nullable column added to the chained
    entries only (entries already chained keep their format and bytes; the pending table gets
    none: only the sealer sets it), and the triggers re-installed in their current definitions:
    the sealer generated from the registry (audit-v4, pending audit-v2 entries chained as v4),
    and the insert check that refuses an entry without the database's own clock.

    Irreversible on purpose, like 0007; in production no audit migration runs backwards
    (compliance/migration_guard.py).
    """

    dependencies = [
        ("compliance", "0007_audit_format_version"),
    ]

    operations = [
        migrations.RunPython(remove_migration),
        migrations.AddField(
            model_name="auditentry",
            name="sealed_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="sealed at (database clock)"),
        ),
        migrations.RunPython(install_migration),
    ]
