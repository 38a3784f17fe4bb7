from django.db import models

from departments.tenancy import DepartmentScopedManager


class ProbeRecord(models.Model):
    department = models.ForeignKey("departments.Department", on_delete=models.CASCADE)
    label = models.CharField(max_length=50)

    objects = DepartmentScopedManager()

    class Meta:
        app_label = "tenancyprobe"
