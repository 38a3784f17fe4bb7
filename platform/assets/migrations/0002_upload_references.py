"""Each upload is its uploader's own reference: identical bytes no longer collapse into
one row, so ``(department, sha256)`` and ``storage_name`` stop being unique (several rows may
name one blob); pages found unusable at use are remembered. Existing rows stay as they are: each
is the one reference to its blob."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("assets", "0001_initial"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="asset",
            name="asset_unique_department_sha256",
        ),
        migrations.AddField(
            model_name="asset",
            name="unusable_pages",
            field=models.JSONField(blank=True, default=list, editable=False, verbose_name="unusable pages"),
        ),
        migrations.AlterField(
            model_name="asset",
            name="storage_name",
            field=models.CharField(db_index=True, editable=False, max_length=32, verbose_name="storage name"),
        ),
        migrations.AddIndex(
            model_name="asset",
            index=models.Index(fields=["department", "sha256"], name="asset_department_sha256"),
        ),
    ]
