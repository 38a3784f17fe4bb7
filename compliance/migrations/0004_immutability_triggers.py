from django.db import migrations


class Migration(migrations.Migration):
    """The first set of audit triggers (audit-v1), now installed by 0005.

    0004 used to install compliance/triggers.py as it was then; that module now describes the
    tables of 0005 (the pending entries), which do not exist yet at this point, so the triggers
    are installed once the schema they guard is complete. A database that applied the old 0004
    has 0005 drop its triggers (by their old names) before installing the current ones.
    """

    dependencies = [("compliance", "0003_archive_anchor_retention")]

    operations = [migrations.RunPython(migrations.RunPython.noop, migrations.RunPython.noop)]
