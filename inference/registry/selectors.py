"""Reads of the model registry: the active version, the versions loaded beside it, and what a
department may use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from departments.tenancy import department_scope
from inference.registry.models import (
    DEFAULT_KINDS,
    ActivationKind,
    DepartmentModelAccess,
    ModelActivation,
    ModelVersion,
)


def _default_activations() -> QuerySet[ModelActivation]:
    return ModelActivation.objects.filter(kind__in=DEFAULT_KINDS).select_related("version")


def model_version_active() -> ModelVersion | None:
    """The version the engine loads at its next start as its default: the newest activation's."""
    activation = _default_activations().first()
    return activation.version if activation is not None else None


def model_versions_additional(limit: int | None = None) -> list[ModelVersion]:
    """The approved versions marked to be loaded beside the active one (newest "load" first), at
    most ``limit`` of them; the active version itself is never among them."""
    active = model_version_active()
    latest: dict[int, ModelActivation] = {}
    rows = ModelActivation.objects.filter(kind__in=(ActivationKind.LOAD, ActivationKind.UNLOAD)).select_related(
        "version"
    )
    for activation in rows:  # newest first: the first row seen of a version decides
        latest.setdefault(activation.version_id, activation)
    versions = [
        a.version
        for a in latest.values()
        if a.kind == ActivationKind.LOAD and a.version.is_approved and (active is None or a.version_id != active.pk)
    ]
    return versions if limit is None else versions[: max(limit, 0)]


def model_versions_loaded(limit: int) -> list[ModelVersion]:
    """What an engine start loads: the active version first, then at most ``limit`` - 1 others."""
    active = model_version_active()
    if active is None:
        return []
    return [active, *model_versions_additional(limit - 1)]


def model_version_previous() -> ModelVersion | None:
    """The version a rollback returns to: the newest earlier activation of another version that
    is still approved."""
    active = model_version_active()
    for activation in _default_activations():
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


def model_infos_for_department(department: Any) -> list[Any]:
    """The loaded models ``department`` may use (their ``ModelInfo``), the default engine's first."""
    from inference.runtime import engines_loaded

    infos = [engine.info() for engine in engines_loaded()]
    return [info for info in infos if model_access_allowed(department=department, manifest_sha256=info.manifest_sha256)]


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
    activation = _default_activations().first()
    unapproved = ModelActivation.objects.filter(version__approved_at__isnull=True).select_related("version")
    return RegistryState(
        versions=ModelVersion.objects.count(),
        approved=ModelVersion.objects.filter(approved_at__isnull=False).count(),
        active=activation.version if activation is not None else None,
        active_since=activation,
        activations_of_unapproved=[f"{a.version.name} ({a.activated_at:%Y-%m-%d %H:%M})" for a in unapproved],
    )
