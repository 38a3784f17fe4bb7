"""The registry's records (registered under the ``inference`` app by ``inference.models``).

A ``ModelVersion`` is one model directory as its manifest describes it: the manifest's SHA-256 is
its identity, so a changed file is a different (unapproved) version, and loading the directory
pins that hash. ``ModelActivation`` rows are the append-only history of which versions the engine
loads: the newest installation/activation/rollback row is the active (default) version; a rollback
appends a row for the previous one. Where ``MODEL_MAX_LOADED`` allows more than one model, "load" /
"unload" rows mark further approved versions loaded beside it (the newest such row of a version
decides).
``DepartmentModelAccess`` records a department administrator's choice of approved versions.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from departments.tenancy import DepartmentScopedManager


class ModelVersion(models.Model):
    manifest_sha256 = models.CharField(_("manifest SHA-256"), max_length=64, unique=True)
    # The model's name in the portal, the audit trail and /v1/models ("model" of a request)
    name = models.CharField(_("name"), max_length=100, unique=True)
    path = models.CharField(_("directory"), max_length=500)
    family = models.CharField(_("family"), max_length=32, help_text=_("config.json model_type"))
    quantization = models.CharField(
        _("quantisation"), max_length=8, blank=True, help_text=_("empty: MODEL_QUANTIZATION applies")
    )
    note = models.TextField(_("note"), blank=True)
    # The model registered by MODEL_PATH at installation: the departments' default (see access)
    installation = models.BooleanField(_("installation model"), default=False)
    registered_by_name = models.CharField(_("registered by"), max_length=150)
    registered_at = models.DateTimeField(_("registered at"), auto_now_add=True)
    approved_by_name = models.CharField(_("approved by"), max_length=150, blank=True)
    approved_at = models.DateTimeField(_("approved at"), null=True, blank=True)

    class Meta:
        ordering = ["-registered_at", "-pk"]
        verbose_name = _("model version")
        verbose_name_plural = _("model versions")

    def __str__(self) -> str:
        return f"{self.name} ({self.manifest_sha256[:12]})"

    @property
    def is_approved(self) -> bool:
        return self.approved_at is not None


class ActivationKind(models.TextChoices):
    INSTALLATION = "installation", _("Installation (MODEL_PATH)")
    ACTIVATION = "activation", _("Activation")
    ROLLBACK = "rollback", _("Rollback")
    LOAD = "load", _("Loaded beside the active version")
    UNLOAD = "unload", _("No longer loaded beside the active version")


# The kinds that choose the active (default) version; LOAD / UNLOAD choose the further ones.
DEFAULT_KINDS = (ActivationKind.INSTALLATION, ActivationKind.ACTIVATION, ActivationKind.ROLLBACK)


class ModelActivation(models.Model):
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="activations")
    kind = models.CharField(_("kind"), max_length=16, choices=ActivationKind.choices)
    activated_by_name = models.CharField(_("activated by"), max_length=150)
    activated_at = models.DateTimeField(_("activated at"), auto_now_add=True)

    class Meta:
        ordering = ["-activated_at", "-pk"]
        verbose_name = _("model activation")
        verbose_name_plural = _("model activations")

    def __str__(self) -> str:
        return f"{self.kind} of {self.version}"


class DepartmentModelAccess(models.Model):
    """A department's choice about one approved version. A department without any row uses the
    installation model alone, so an installation works without any choice being made."""

    department = models.ForeignKey("departments.Department", on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="department_access")
    enabled = models.BooleanField(_("enabled"), default=True)
    changed_by_name = models.CharField(_("changed by"), max_length=150)
    changed_at = models.DateTimeField(_("changed at"), auto_now=True)

    objects = DepartmentScopedManager()

    class Meta:
        verbose_name = _("department model access")
        verbose_name_plural = _("department model access")
        constraints = [
            models.UniqueConstraint(fields=["department", "version"], name="department_model_access_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.version} for department {self.department_id}: {'on' if self.enabled else 'off'}"
