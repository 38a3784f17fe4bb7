"""The department administrator's writes of task templates (portal), audited.

Only name, instruction, JSON schema and the active flag are edited here; the extraction rules and
the built-in templates belong to the extraction feature (``inference.extraction.services``). A built-in
template can be edited or deactivated, not deleted (it would come back on the next ensure).
"""

from __future__ import annotations

import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify
from django.utils.translation import gettext_lazy as _

from accounts.permissions import Action, authorize
from compliance.events import EventType
from compliance.services import audit_record
from departments.models import Department
from departments.tenancy import department_scope
from inference.models import TaskTemplate

BUILTIN_NOT_DELETABLE = _("A built-in template cannot be deleted; deactivate it instead.")
SCHEMA_NOT_OBJECT = _("The JSON schema must be a JSON object.")
EDITABLE_FIELDS = ("name", "instruction", "json_schema", "is_active")


def _require_department_admin(*, department: Department, user: Any, obj: TaskTemplate | None) -> None:
    """Checked before the service's transaction opens, so a refusal's entry outlives it."""
    authorize(user, Action.TASK_TEMPLATE_MANAGE, department=department, obj=obj)


def _unique_slug(department: Department, name: str) -> str:
    base = slugify(name)[:40] or "template"
    slug = base
    while TaskTemplate.objects.filter(department=department, slug=slug).exists():
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug


def _check_schema(schema: Any) -> None:
    if schema is not None and not isinstance(schema, dict):
        raise ValidationError({"json_schema": SCHEMA_NOT_OBJECT})


def task_template_create(
    *, department: Department, name: str, instruction: str, json_schema: dict | None, is_active: bool, acting_user: Any
) -> TaskTemplate:
    _require_department_admin(department=department, user=acting_user, obj=None)
    with transaction.atomic(durable=True), department_scope(department):
        _check_schema(json_schema)
        template = TaskTemplate(
            department=department,
            name=name,
            slug=_unique_slug(department, name),
            instruction=instruction,
            json_schema=json_schema,
            is_active=is_active,
            created_by=acting_user,
        )
        template_saved(
            template,
            acting_user=acting_user,
            details={
                "action": "create",
                "after": {"name": name, "is_active": is_active, "has_schema": bool(json_schema)},
            },
        )
    return template


def template_saved(
    template: TaskTemplate, *, acting_user: Any, details: dict, update_fields: list[str] | None = None
) -> None:
    """Validate and save ``template`` (inside the caller's transaction and department scope),
    audited as ``task_template.change`` with ``details``."""
    template.full_clean()
    template.save(update_fields=update_fields)
    audit_record(
        event_type=EventType.TASK_TEMPLATE_CHANGE,
        actor=acting_user,
        department=template.department,
        obj=template,
        details=details,
    )


def task_template_update(*, template: TaskTemplate, acting_user: Any, **changes: Any) -> TaskTemplate:
    department = template.department
    _require_department_admin(department=department, user=acting_user, obj=template)
    with transaction.atomic(durable=True), department_scope(department):
        unknown = set(changes) - set(EDITABLE_FIELDS)
        if unknown:
            raise ValueError(f"not editable here: {sorted(unknown)}")
        _check_schema(changes.get("json_schema", template.json_schema))
        before = {name: getattr(template, name) for name in changes}
        for name, value in changes.items():
            setattr(template, name, value)
        changed = sorted(name for name in changes if before[name] != changes[name])
        template_saved(
            template,
            acting_user=acting_user,
            details={
                "action": "update",
                "changed": changed,
                "before": {k: before[k] for k in changed if k in ("name", "is_active")},
                "after": {k: changes[k] for k in changed if k in ("name", "is_active")},
            },
        )
    return template


def task_template_delete(*, template: TaskTemplate, acting_user: Any) -> None:
    department = template.department
    _require_department_admin(department=department, user=acting_user, obj=template)
    with transaction.atomic(durable=True), department_scope(department):
        if template.is_builtin:
            raise ValidationError(BUILTIN_NOT_DELETABLE)
        audit_record(
            event_type=EventType.TASK_TEMPLATE_CHANGE,
            actor=acting_user,
            department=department,
            obj=template,
            details={"action": "delete", "before": {"name": template.name}},
        )
        TaskTemplate.objects.filter(pk=template.pk).delete()
