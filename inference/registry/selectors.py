"""Reads of the model registry: the active version, and what a department may use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from departments.tenancy import department_scope
from inference.registry.models import DepartmentModelAccess, ModelActivation, ModelVersion


def model_version_active() -> ModelVersion | None:
    """The version the engine loads at its next start: the newest activation's."""
    activation = ModelActivation.objects.select_related("version").first()
    return activation.version if activation is not None else None


def model_version_previous() -> ModelVersion | None:
    """The version a rollback returns to: the newest earlier activation of another version that
    is still approved."""
    active = model_version_active()
    for activation in ModelActivation.objects.select_related("version"):
        version = activation.version
        if active is not None and version.pk == active.pk:
            continue
        if version.is_approved:
            return version
    return None


def model_versions_for_department(department: Any) -> QuerySet[ModelVersion]:
    """The approved versions ``department`` may use: those its administrator enabled, or, while
    it has made no choice at all, the installation model."""
    with department_scope(department):
        choices = list(DepartmentModelAccess.objects.values_list("version_id", "enabled"))
    approved = ModelVersion.objects.filter(approved_at__isnull=False)
    if not choices:
        return approved.filter(installation=True)
    return approved.filter(pk__in=[version_id for version_id, enabled in choices if enabled])


def model_access_allowed(*, department: Any, manifest_sha256: str) -> bool:
    """May ``department`` use the model whose manifest hash this is?

    An empty registry means the serving engine did not come from it (start-up registers the
    installation model before the engine serves; only tests and benchmarks install an engine of
    their own): there is no choice to check then.
    """
    if not ModelVersion.objects.exists():
        return True
    return model_versions_for_department(department).filter(manifest_sha256=manifest_sha256).exists()


def department_model_choices(department: Any) -> list[tuple[ModelVersion, bool]]:
    """Every approved version with whether ``department`` may use it (its administrator's page)."""
    allowed = set(model_versions_for_department(department).values_list("pk", flat=True))
    return [(version, version.pk in allowed) for version in ModelVersion.objects.filter(approved_at__isnull=False)]


@dataclass(frozen=True)
class RegistryState:
    """What the compliance report shows of the registry (SM-1, SM-2: who approved, who activated)."""

    versions: int
    approved: int
    active: ModelVersion | None
    active_since: ModelActivation | None
    # Activations of a version that is not approved: the services refuse them, so any is a finding
    activations_of_unapproved: list[str]


def model_registry_state() -> RegistryState:
    activation = ModelActivation.objects.select_related("version").first()
    unapproved = ModelActivation.objects.filter(version__approved_at__isnull=True).select_related("version")
    return RegistryState(
        versions=ModelVersion.objects.count(),
        approved=ModelVersion.objects.filter(approved_at__isnull=False).count(),
        active=activation.version if activation is not None else None,
        active_since=activation,
        activations_of_unapproved=[f"{a.version.name} ({a.activated_at:%Y-%m-%d %H:%M})" for a in unapproved],
    )
