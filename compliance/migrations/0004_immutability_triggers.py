from django.db import migrations

from compliance.triggers import install_migration, remove_migration


class Migration(migrations.Migration):
    """Database triggers that make the audit tables append-only (see compliance/triggers.py).

    Keep this migration after every schema change of the audit tables: on SQLite, Django
    rebuilds a table to alter it, which drops its triggers (a test would notice).
    """

    dependencies = [("compliance", "0003_archive_anchor_retention")]

    operations = [migrations.RunPython(install_migration, remove_migration)]
