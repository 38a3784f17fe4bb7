"""The chat policy in the administration console: the security administrator's switch (who may
use this page is the policy layer's ``CONSOLE`` table)."""

from __future__ import annotations

from django.contrib import admin

from compliance.admin_audit import AuditedModelAdmin
from compliance.events import EventType
from departments.tenancy import all_departments
from inference.models import ChatPolicy


@admin.register(ChatPolicy)
class ChatPolicyAdmin(AuditedModelAdmin):
    audit_event_type = EventType.SECURITY_SETTING_CHANGE
    list_display = ("department", "admin_may_read_content", "updated_at")
    list_filter = ("admin_may_read_content",)

    def get_queryset(self, request):
        with all_departments(reason="the security administrator reviews every department's chat policy"):
            return ChatPolicy.objects.get_queryset().select_related("department")

    # Form validation (unique department) and saving query the department-scoped manager.
    def changeform_view(self, request, *args, **kwargs):
        with all_departments(reason="the security administrator edits a chat policy"):
            return super().changeform_view(request, *args, **kwargs)

    def changelist_view(self, request, *args, **kwargs):
        with all_departments(reason="the security administrator lists chat policies"):
            return super().changelist_view(request, *args, **kwargs)
