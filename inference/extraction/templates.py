"""The department administrator's writes of task templates (portal), audited.

Only name, instruction, JSON schema and the active flag are edited here; the extraction rules and
the built-in templates belong to the extraction feature (``inference.extraction.services``). A built-in
template can be edited or deactivated, not deleted (it would come back on the next ensure).
"""

from __future__ import annotations

import secrets
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.text import slugify
from django.utils.translation import gettext_lazy as _

from accounts.roles import MembershipRole
from compliance.events import EventType, Outcome
from compliance.services import audit_record
from departments.models import Department, Membership
from departments.tenancy import department_scope
from inference.models import TaskTemplate

NOT_DEPARTMENT_ADMIN = _("Only the department's administrators manage task templates.")
BUILTIN_NOT_DELETABLE = _("A built-in template cannot be deleted; deactivate it instead.")
SCHEMA_NOT_OBJECT = _("The JSON schema must be a JSON object.")
EDITABLE_FIELDS = ("name", "instruction", "json_schema", "is_active")


def _require_department_admin(*, department: Department, user: Any, action: str, obj: TaskTemplate | None) -> None:
    allowed = Membership.objects.filter(
        user_id=getattr(user, "pk", None), department=department, role=MembershipRole.ADMIN
    ).exists()
    if not allowed:
        audit_record(
            event_type=EventType.ACCESS_DENIED,
            outcome=Outcome.DENIED,
            actor=user,
            department=department,
            obj=obj,
            object_type="inference.tasktemplate",
            details={"action": action, "reason": "not a department administrator"},
        )
        raise PermissionDenied(NOT_DEPARTMENT_ADMIN)


def _unique_slug(department: Department, name: str) -> str:
    base = slugify(name)[:40] or "template"
    slug = base
    while TaskTemplate.objects.filter(department=department, slug=slug).exists():
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug


def _check_schema(schema: Any) -> None:
    if schema is not None and not isinstance(schema, dict):
        raise ValidationError({"json_schema": SCHEMA_NOT_OBJECT})


@transaction.atomic
def task_template_create(
    *, department: Department, name: str, instruction: str, json_schema: dict | None, is_active: bool, acting_user: Any
) -> TaskTemplate:
    with department_scope(department):
        _require_department_admin(department=department, user=acting_user, action="task_template.create", obj=None)
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
        template.full_clean()
        template.save()
        audit_record(
            event_type=EventType.TASK_TEMPLATE_CHANGE,
            actor=acting_user,
            department=department,
            obj=template,
            details={
                "action": "create",
                "after": {"name": name, "is_active": is_active, "has_schema": bool(json_schema)},
            },
        )
    return template


@transaction.atomic
def task_template_update(*, template: TaskTemplate, acting_user: Any, **changes: Any) -> TaskTemplate:
    department = template.department
    with department_scope(department):
        _require_department_admin(department=department, user=acting_user, action="task_template.update", obj=template)
        unknown = set(changes) - set(EDITABLE_FIELDS)
        if unknown:
            raise ValueError(f"not editable here: {sorted(unknown)}")
        _check_schema(changes.get("json_schema", template.json_schema))
        before = {name: getattr(template, name) for name in changes}
        for name, value in changes.items():
            setattr(template, name, value)
        template.full_clean()
        template.save()
        changed = sorted(name for name in changes if before[name] != changes[name])
        audit_record(
            event_type=EventType.TASK_TEMPLATE_CHANGE,
            actor=acting_user,
            department=department,
            obj=template,
            details={
                "action": "update",
                "changed": changed,
                "before": {k: before[k] for k in changed if k in ("name", "is_active")},
                "after": {k: changes[k] for k in changed if k in ("name", "is_active")},
            },
        )
    return template


@transaction.atomic
def task_template_delete(*, template: TaskTemplate, acting_user: Any) -> None:
    department = template.department
    with department_scope(department):
        _require_department_admin(department=department, user=acting_user, action="task_template.delete", obj=template)
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
