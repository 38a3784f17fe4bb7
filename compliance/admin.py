"""The trail in the administrators' console: read-only, and only for the audit administrator.

Who may use these pages is the policy table's ``CONSOLE`` (through ``User.has_perm``): only the
audit administrator views entries, archives and anchors; the pages also refuse every write
themselves, so nothing could make the trail writable here. The retention policies belong to the
security administrator, and each change is audited with before/after through ``AuditedModelAdmin``.
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from compliance.admin_audit import AuditedModelAdmin
from compliance.events import ActorType, EventType
from compliance.models import AuditAnchor, AuditArchive, AuditEntry, RetentionPolicy
from departments.tenancy import all_departments


class ReadOnlyForAuditorAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_actions(self, request):
        return {}  # not even "delete selected"


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyForAuditorAdmin):
    list_display = ("sequence", "timestamp", "actor_shown", "department_slug", "event", "outcome", "object_shown")
    list_filter = ("outcome", "actor_type")
    search_fields = ("=sequence", "actor_name", "=department_slug", "=event_type", "=request_id", "object_repr")
    date_hierarchy = "timestamp"
    show_full_result_count = False  # COUNT(*) over millions of rows on every page is pointless
    exclude = ("event_type", "details")  # shown by ``event`` and ``details_shown``

    def get_readonly_fields(self, request, obj=None):
        shown = {"event_type": "event", "details": "details_shown"}
        return [shown.get(field.name, field.name) for field in self.model._meta.fields]

    @admin.display(description=_("event type"), ordering="event_type")
    def event(self, entry: AuditEntry) -> str:
        """The event's name in the reader's language; the stored code beside it, for searching."""
        label = dict(EventType.choices).get(entry.event_type)
        if label is None:
            return format_html("<code>{}</code>", entry.event_type)
        return format_html("{} <code>{}</code>", label, entry.event_type)

    @admin.display(description=_("actor"), ordering="actor_name")
    def actor_shown(self, entry: AuditEntry) -> str:
        """A person's or a key's name; the system and anonymous callers by their kind, in the
        reader's language."""
        if entry.actor_type in (ActorType.USER, ActorType.API_KEY) and entry.actor_name:
            return entry.actor_name
        return entry.get_actor_type_display()

    @admin.display(description=_("object"), ordering="object_repr")
    def object_shown(self, entry: AuditEntry) -> str:
        """The object's name as the trail froze it when the entry was written (data, in no
        reader's language: "asset 3f…", "#12 department.create:success a1")."""
        return format_html("<code>{}</code>", entry.object_repr) if entry.object_repr else "—"

    @admin.display(description=_("details"))
    def details_shown(self, entry: AuditEntry) -> str:
        """The details as indented JSON (data: their keys are the trail's own vocabulary)."""
        return format_html("<pre>{}</pre>", json.dumps(entry.details, indent=2, ensure_ascii=False, sort_keys=True))


@admin.register(AuditArchive)
class AuditArchiveAdmin(ReadOnlyForAuditorAdmin):
    list_display = ("created_at", "actor_name", "format", "first_sequence", "last_sequence", "complete", "sha256")

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]


@admin.register(AuditAnchor)
class AuditAnchorAdmin(ReadOnlyForAuditorAdmin):
    list_display = ("sequence", "hash", "removed", "created_at")

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(AuditedModelAdmin):
    audit_event_type = EventType.RETENTION_POLICY_CHANGE
    list_display = ("department_shown", "conversation_days", "file_days", "legal_hold", "updated_at")
    list_filter = ("legal_hold",)

    # The model's department field has no translated verbose name: the console names it here.
    @admin.display(description=_("department"), ordering="department")
    def department_shown(self, policy: RetentionPolicy):
        return policy.department

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "department":
            kwargs["label"] = _("department")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_queryset(self, request):
        with all_departments(reason="the security administrator reviews every department's retention policy"):
            return RetentionPolicy.objects.get_queryset().select_related("department")

    # The console works across departments: form validation (unique department) and saving
    # query the department-scoped manager, so the views run with every department visible.
    def changeform_view(self, request, *args, **kwargs):
        with all_departments(reason="the security administrator edits a retention policy"):
            return super().changeform_view(request, *args, **kwargs)

    def delete_view(self, request, *args, **kwargs):
        with all_departments(reason="the security administrator deletes a retention policy"):
            return super().delete_view(request, *args, **kwargs)
