from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("inference", "0008_model_activation_load_kinds"),
    ]

    operations = [
        migrations.AddField(
            model_name="batchjob",
            name="model_name",
            field=models.CharField(blank=True, max_length=100, verbose_name="model"),
        ),
    ]
