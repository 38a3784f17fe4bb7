"""Writes of the model registry: register, approve, activate, roll back, load beside the active
version / unload, the installation model, and a department's choice of models. Each asks the
policy table before its transaction, writes its audit entry inside it, and a refusal is recorded
by the policy layer's one path.

Activation (and loading a version beside the active one) changes what the engine loads at its
**next start**: the running engine keeps serving what it loaded (there is no hot swap; restart
the service).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from accounts.permissions import Action, RefusedForbidden, RefusedNotFound, authorize, refusal_record
from compliance.events import EventType
from compliance.services import audit_record
from departments.tenancy import department_scope
from inference.engine.errors import ModelLoadError
from inference.engine.families import family_for_config
from inference.engine.manifest import manifest_verify
from inference.registry.models import (
    DEFAULT_KINDS,
    ActivationKind,
    DepartmentModelAccess,
    ModelActivation,
    ModelVersion,
)
from inference.registry.selectors import (
    model_access_allowed,
    model_version_active,
    model_version_previous,
    model_versions_additional,
)

SYSTEM = "system"
VERSION_NOT_APPROVED = (
    "This model version is not approved: the security administrator approves a version before it can be used."
)
NO_PREVIOUS_VERSION = "There is no earlier approved version to roll back to."
DIRECTORY_REFUSED = "The directory cannot be registered: {error}"
VERSION_EXISTS = "This model directory (manifest {sha256}) is already registered as '{name}'."
LOAD_LIMIT_REACHED = (
    "{limit} model(s) are loaded already, the most MODEL_MAX_LOADED allows: unload one first, or raise the setting."
)
LOAD_IS_ACTIVE = "This version is the active one: it is always loaded."
NOT_LOADED_BESIDE = "This version is not loaded beside the active one."
QUANTIZATIONS = ("", "nf4", "int8", "bf16", "fp16", "fp32")


def _name_of(user: Any) -> str:
    return user.get_username() if hasattr(user, "get_username") else str(user)


def _version_details(version: ModelVersion) -> dict[str, Any]:
    return {
        "manifest_sha256": version.manifest_sha256,
        "name": version.name,
        "path": version.path,
        "family": version.family,
        "quantization": version.quantization,
        "note": version.note,
    }


def _audit(event_type: EventType, version: ModelVersion, *, actor: Any, **details: Any) -> None:
    audit_record(
        event_type=event_type,
        actor=actor,
        object_type="inference.modelversion",
        object_id=version.manifest_sha256,
        object_repr=version.name,
        details={**_version_details(version), **details},
    )


def _refusal_of(
    version: ModelVersion, reason: str, *, action: Action, actor: Any, department: Any, **where: Any
) -> None:
    """Record a refusal that names a model version."""
    refusal_record(
        action=action,
        reason=reason,
        actor=actor,
        department=department,
        object_type="inference.modelversion",
        object_id=version.manifest_sha256,
        object_repr=version.name,
        **where,
    )


class VersionNotApproved(RefusedForbidden):
    """An unapproved version was to be activated or enabled (the refusal is recorded)."""


def _refuse_unapproved(
    version: ModelVersion, *, action: Action, actor: Any, department: Any = None, **where: Any
) -> Exception:
    """Record the refusal of an unapproved version (the policy layer's one path) and return it."""
    _refusal_of(
        version, "the model version is not approved", action=action, actor=actor, department=department, **where
    )
    return VersionNotApproved(VERSION_NOT_APPROVED)


def model_directory_describe(path: str | Path) -> tuple[str, str]:
    """(manifest SHA-256, family) of a model directory: every file checked against its manifest,
    the family read from ``config.json``'s ``model_type``; ValidationError naming the problem."""
    model_dir = Path(path)
    try:
        manifest = manifest_verify(model_dir)
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        family = family_for_config(config).model_type
    except ModelLoadError as exc:
        raise ValidationError(DIRECTORY_REFUSED.format(error=exc)) from exc
    except (OSError, ValueError) as exc:
        raise ValidationError(DIRECTORY_REFUSED.format(error=exc)) from exc
    return manifest.sha256, family


def model_version_register(
    *, path: str | Path, name: str, quantization: str = "", note: str = "", acting_user: Any
) -> ModelVersion:
    """Register a model directory as a new, unapproved version (the system administrator)."""
    authorize(acting_user, Action.MODEL_REGISTER, object_type="inference.modelversion", object_repr=str(name)[:255])
    sha256, family = model_directory_describe(path)
    existing = ModelVersion.objects.filter(manifest_sha256=sha256).first()
    if existing is not None:
        raise ValidationError(VERSION_EXISTS.format(sha256=sha256, name=existing.name))
    if quantization not in QUANTIZATIONS:
        raise ValidationError({"quantization": f"One of: {', '.join(q or '(default)' for q in QUANTIZATIONS)}"})
    with transaction.atomic(durable=True):
        version = _version_store(
            path,
            manifest_sha256=sha256,
            name=name,
            family=family,
            quantization=quantization,
            note=note,
            registered_by_name=_name_of(acting_user),
        )
        _audit(EventType.MODEL_REGISTER, version, actor=acting_user)
    return version


def _version_store(path: Any, **fields: Any) -> ModelVersion:
    """A new version row for the model directory at ``path`` (stored resolved), validated."""
    version = ModelVersion(path=str(Path(path).resolve()), **fields)
    version.full_clean()
    version.save()
    return version


def model_version_approve(*, version: ModelVersion, acting_user: Any) -> ModelVersion:
    """Approve a version's manifest for loading (the security administrator)."""
    authorize(acting_user, Action.MODEL_APPROVE, obj=version)
    with transaction.atomic(durable=True):
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.is_approved:
            return version
        version.approved_by_name = _name_of(acting_user)
        version.approved_at = timezone.now()
        version.save(update_fields=["approved_by_name", "approved_at"])
        _audit(EventType.MODEL_APPROVE, version, actor=acting_user)
    return version


def _activation_write(
    version: ModelVersion, *, kind: str, actor: Any, event_type: EventType, **details: Any
) -> ModelActivation:
    # Called inside the caller's transaction: the activation and its audit entry go together.
    before = model_version_active()
    activation = ModelActivation(version=version, kind=kind, activated_by_name=_name_of(actor))
    activation.full_clean()
    activation.save()
    if kind in DEFAULT_KINDS:
        details = {
            "previous_manifest_sha256": before.manifest_sha256 if before is not None else "",
            "previous_name": before.name if before is not None else "",
            **details,
        }
    else:  # loaded beside the active version, or no longer
        details = {"active_manifest_sha256": before.manifest_sha256 if before is not None else "", **details}
    _audit(event_type, version, actor=actor, kind=kind, takes_effect="next engine start", **details)
    return activation


def _authorize_approved(version: ModelVersion, acting_user: Any) -> None:
    """The system administrator's activation or load of ``version``: authorised, then refused
    (the refusal recorded) unless the version, as stored now, is approved."""
    authorize(acting_user, Action.MODEL_ACTIVATE, obj=version)
    version.refresh_from_db()
    if not version.is_approved:
        raise _refuse_unapproved(version, action=Action.MODEL_ACTIVATE, actor=acting_user)


def model_version_activate(*, version: ModelVersion, acting_user: Any) -> ModelActivation:
    """Make an approved version the one the engine loads at its next start (the system
    administrator). An unapproved version is refused, and the refusal recorded."""
    _authorize_approved(version, acting_user)
    with transaction.atomic(durable=True):
        _activations_lock()
        return _activation_write(
            version, kind=ActivationKind.ACTIVATION, actor=acting_user, event_type=EventType.MODEL_ACTIVATE
        )


def model_version_rollback(*, acting_user: Any) -> ModelActivation:
    """Activate again the version that was active before the current one (the system
    administrator): no environment to edit, the next engine start loads it."""
    authorize(acting_user, Action.MODEL_ACTIVATE, object_type="inference.modelversion", object_repr="rollback")
    with transaction.atomic(durable=True):
        _activations_lock()
        previous = model_version_previous()
        if previous is None:
            raise ValidationError(NO_PREVIOUS_VERSION)
        return _activation_write(
            previous, kind=ActivationKind.ROLLBACK, actor=acting_user, event_type=EventType.MODEL_ROLLBACK
        )


def model_version_load(*, version: ModelVersion, acting_user: Any) -> ModelActivation:
    """Mark an approved version to be loaded beside the active one at the next engine start (the
    system administrator, ``Action.MODEL_ACTIVATE``), within ``MODEL_MAX_LOADED``. An unapproved
    version is refused and the refusal recorded."""
    from django.conf import settings

    _authorize_approved(version, acting_user)
    with transaction.atomic(durable=True):
        _activations_lock()
        active = model_version_active()
        if active is not None and active.pk == version.pk:
            raise ValidationError(LOAD_IS_ACTIVE, code="load_is_active")
        additional = model_versions_additional()
        if any(other.pk == version.pk for other in additional):
            return version.activations.filter(kind=ActivationKind.LOAD).first()
        limit = settings.MODEL_MAX_LOADED
        if 1 + len(additional) >= limit:
            raise ValidationError(LOAD_LIMIT_REACHED.format(limit=limit), code="load_limit_reached")
        return _activation_write(
            version,
            kind=ActivationKind.LOAD,
            actor=acting_user,
            event_type=EventType.MODEL_ACTIVATE,
            loaded_beside=[other.manifest_sha256 for other in additional],
            max_loaded=limit,
        )


def model_version_unload(*, version: ModelVersion, acting_user: Any) -> ModelActivation:
    """No longer load ``version`` beside the active one from the next engine start (the system
    administrator, ``Action.MODEL_ACTIVATE``)."""
    authorize(acting_user, Action.MODEL_ACTIVATE, obj=version)
    with transaction.atomic(durable=True):
        _activations_lock()
        if not any(other.pk == version.pk for other in model_versions_additional()):
            raise ValidationError(NOT_LOADED_BESIDE, code="not_loaded_beside")
        return _activation_write(
            version, kind=ActivationKind.UNLOAD, actor=acting_user, event_type=EventType.MODEL_ACTIVATE
        )


def _activations_lock() -> None:
    """Serialise writers of the activation history until the transaction ends (PostgreSQL; SQLite
    serialises writing transactions by itself)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {ModelActivation._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")


def model_installation_record(*, manifest_sha256: str, name: str, path: str | Path, family: str) -> ModelVersion:
    """Register ``MODEL_PATH``'s model as approved and active, done by the system at installation
    (the first engine start with an empty registry): an installation needs no step of its own,
    and the operator who set MODEL_PATH (and MODEL_MANIFEST_SHA256) vouched for it.

    Several worker processes may start at once on an empty registry: the first one installs, the
    others find its activation and record nothing."""
    with transaction.atomic():
        _activations_lock()
        installed = model_version_active()
        if installed is not None:
            return installed
        version = ModelVersion.objects.select_for_update().filter(manifest_sha256=manifest_sha256).first()
        if version is None:
            if ModelVersion.objects.filter(name=name).exists():
                name = f"{name}-{manifest_sha256[:12]}"
            version = _version_store(
                path,
                manifest_sha256=manifest_sha256,
                name=name,
                family=family,
                registered_by_name=SYSTEM,
                installation=True,
                note="MODEL_PATH at installation",
            )
            _audit(EventType.MODEL_REGISTER, version, actor=SYSTEM, installation=True)
        elif not version.installation:
            version.installation = True
            version.save(update_fields=["installation"])
        if not version.is_approved:
            version.approved_by_name = SYSTEM
            version.approved_at = timezone.now()
            version.save(update_fields=["approved_by_name", "approved_at"])
            _audit(EventType.MODEL_APPROVE, version, actor=SYSTEM, installation=True)
        _activation_write(
            version,
            kind=ActivationKind.INSTALLATION,
            actor=SYSTEM,
            event_type=EventType.MODEL_ACTIVATE,
            installation=True,
        )
    return version


def department_model_access_set(
    *, department: Any, version: ModelVersion, enabled: bool, acting_user: Any, membership: Any = None
) -> DepartmentModelAccess:
    """Enable or disable an approved version for a department (its department administrator).

    The first choice a department makes writes down its default too (the installation model
    stays enabled unless it is switched off), so enabling a second model takes nothing away."""
    authorize(acting_user, Action.DEPARTMENT_MODEL_MANAGE, department=department, membership=membership, obj=version)
    version.refresh_from_db()
    if enabled and not version.is_approved:
        raise _refuse_unapproved(
            version, action=Action.DEPARTMENT_MODEL_MANAGE, actor=acting_user, department=department
        )
    name = _name_of(acting_user)
    with transaction.atomic(durable=True), department_scope(department):
        # Two administrators making the department's first choice at once: the department row's
        # lock makes the second wait and then see the first one's defaults.
        type(department).objects.select_for_update().filter(pk=department.pk).first()
        if not DepartmentModelAccess.objects.exists():
            for default in ModelVersion.objects.filter(installation=True, approved_at__isnull=False):
                DepartmentModelAccess.objects.get_or_create(
                    department=department, version=default, defaults={"enabled": True, "changed_by_name": name}
                )
        access, _created = DepartmentModelAccess.objects.update_or_create(
            department=department, version=version, defaults={"enabled": enabled, "changed_by_name": name}
        )
        audit_record(
            event_type=EventType.MODEL_ACCESS_CHANGE,
            actor=acting_user,
            department=department,
            object_type="inference.modelversion",
            object_id=version.manifest_sha256,
            object_repr=version.name,
            details={"manifest_sha256": version.manifest_sha256, "name": version.name, "enabled": enabled},
        )
    return access


MODEL_NOT_ENABLED = "The model '{model}' is not enabled for this department."
# The same refusal in words that name no model: what the portal's 403 page shows (config.error_pages).
MODEL_NOT_ENABLED_REASON = "This model is not enabled for your department."
MODEL_UNKNOWN = "The model '{model}' does not exist on this server."


class ModelNotEnabled(RefusedForbidden):
    """A department asked for a model its administrator did not enable (recorded)."""

    shown_reason = MODEL_NOT_ENABLED_REASON


class ModelNotFound(RefusedNotFound):
    """A request named a model no version of the registry and no loaded engine is called (recorded;
    a 404 where nothing catches it)."""


def model_use_authorize(
    *, subject: Any, department: Any, manifest_sha256: str, model_name: str, action: Action, **where: Any
) -> None:
    """Raise a recorded ``ModelNotEnabled`` unless ``department`` may use this model (every
    channel that calls the model asks this before submitting)."""
    if model_access_allowed(department=department, manifest_sha256=manifest_sha256):
        return
    refusal_record(
        action=action,
        reason="the model is not enabled for the department",
        actor=subject,
        department=department,
        object_type="inference.modelversion",
        object_id=manifest_sha256,
        object_repr=model_name[:255],
        **where,
    )
    raise ModelNotEnabled(MODEL_NOT_ENABLED.format(model=model_name))


def model_engine_for(*, subject: Any, department: Any, requested: str | None, action: Action, **where: Any):
    """The engine a request of ``department`` goes to: the loaded model named ``requested``, or
    with no name the department's default — the active version's engine if the department may use
    it, else the first loaded model it may use. Every refusal is recorded first:

    - ``ModelUnavailable`` (503) while the default model loads or the process stops;
    - ``ModelNotFound``: no such model (reason "the model is not served here");
    - ``VersionNotApproved``: a registered version that is not approved (``VERSION_NOT_APPROVED``);
    - ``ModelNotEnabled``: a model the department's administrator did not enable;
    - ``ModelNotLoaded`` (503): approved and enabled, but not loaded by this process.
    """
    from inference.runtime import ModelNotLoaded, engines_loaded, require_engine

    default = require_engine()
    if not requested:
        for engine in engines_loaded():
            if model_access_allowed(department=department, manifest_sha256=engine.info().manifest_sha256):
                return engine
        engine = default
    else:
        try:
            engine = require_engine(requested)
        except ModelNotLoaded:
            _refuse_not_loaded(subject=subject, department=department, requested=requested, action=action, **where)
            raise
    info = engine.info()
    model_use_authorize(
        subject=subject,
        department=department,
        manifest_sha256=info.manifest_sha256,
        model_name=info.name,
        action=action,
        **where,
    )
    return engine


def _refuse_not_loaded(*, subject: Any, department: Any, requested: str, action: Action, **where: Any) -> None:
    """Why a named model that is not loaded here is refused, recorded: unknown, not approved, not
    enabled for the department; else (approved and enabled) "not loaded", for the caller to raise."""
    version = ModelVersion.objects.filter(name=requested).first()
    if version is None:
        refusal_record(
            action=action,
            reason="the model is not served here",
            actor=subject,
            department=department,
            object_type="inference.modelversion",
            object_repr=requested[:255],
            **where,
        )
        raise ModelNotFound(MODEL_UNKNOWN.format(model=requested))
    if not version.is_approved:
        raise _refuse_unapproved(version, action=action, actor=subject, department=department, **where)
    model_use_authorize(
        subject=subject,
        department=department,
        manifest_sha256=version.manifest_sha256,
        model_name=version.name,
        action=action,
        **where,
    )
    _refusal_of(version, "the model is not loaded", action=action, actor=subject, department=department, **where)
