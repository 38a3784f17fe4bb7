"""A ModelAdmin base that records every change made in the admin, with before/after values."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from compliance.events import EventType, Outcome
from compliance.services import audit_record


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if hasattr(value, "all") and callable(value.all):  # a queryset from a many-to-many field
        return sorted(str(item) for item in value.all())
    if isinstance(value, (list, tuple, set)):
        return sorted(str(item) for item in value)
    return str(value)


def _department_of(obj: Any) -> Any:
    from departments.models import Department

    if isinstance(obj, Department):
        return obj
    return getattr(obj, "department", None)


class AuditedModelAdmin(admin.ModelAdmin):
    """Runs inside the admin's own transaction, so an audit failure rolls the change back."""

    audit_event_type = EventType.ADMIN_CHANGE

    def save_model(self, request, obj, form, change):
        before = {name: _plain(form.initial.get(name)) for name in form.changed_data} if change else {}
        super().save_model(request, obj, form, change)
        after = {name: _plain(form.cleaned_data.get(name)) for name in form.changed_data}
        # Secrets never enter the trail, only the fact that they changed.
        for name in list(after):
            if "password" in name or "secret" in name or "key_hash" in name:
                before[name] = after[name] = "(changed)" if change else "(set)"
        audit_record(
            event_type=self.audit_event_type,
            department=_department_of(obj),
            obj=obj,
            details={"action": "change" if change else "add", "before": before, "after": after},
        )

    def delete_model(self, request, obj):
        self._audit_deletion(obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self._audit_deletion(obj)
        super().delete_queryset(request, queryset)

    def _audit_deletion(self, obj) -> None:
        audit_record(
            event_type=self.audit_event_type,
            outcome=Outcome.SUCCESS,
            department=_department_of(obj),
            obj=obj,
            details={"action": "delete"},
        )
