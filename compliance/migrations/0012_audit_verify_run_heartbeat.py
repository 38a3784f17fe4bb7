"""A heartbeat for chain verifications started from the console (compliance/verify_runs.py): a
run is judged interrupted by its last sign of life, not by when it was requested.

The table lives outside the project's migration state (see 0011), so the column is added through
the schema editor on a stand-in model of that table."""

from django.apps.registry import Apps
from django.db import migrations, models


def _stand_in():
    class Run(models.Model):  # noqa: DJ008 - a stand-in for the schema editor, never shown
        class Meta:
            apps = Apps(installed_apps=())
            app_label = "compliance"
            db_table = "compliance_auditverifyrun"

    field = models.DateTimeField(null=True)
    field.contribute_to_class(Run, "heartbeat_at")
    return Run, field


def add_heartbeat(apps, schema_editor):
    model, field = _stand_in()
    schema_editor.add_field(model, field)


def remove_heartbeat(apps, schema_editor):
    model, field = _stand_in()
    schema_editor.remove_field(model, field)


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0011_audit_verify_run"),
    ]

    operations = [migrations.RunPython(add_heartbeat, remove_heartbeat)]
