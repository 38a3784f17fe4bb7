from django.contrib import admin

from compliance.admin_audit import AuditedModelAdmin
from departments.models import Department, Membership


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Department)
class DepartmentAdmin(AuditedModelAdmin):
    list_display = ("slug", "name", "classification", "is_active", "created_at")
    list_filter = ("is_active", "classification")
    search_fields = ("slug", "name")
    # Labels (AC-7) belong to the security administrator (accounts.DepartmentLabel).
    readonly_fields = ("classification", "created_at")


@admin.register(Membership)
class MembershipAdmin(AuditedModelAdmin):
    list_display = ("user", "department", "role", "source", "created_at")
    list_filter = ("role", "source", "department")
    search_fields = ("user__username", "department__slug")
    autocomplete_fields = ["user", "department"]
    readonly_fields = ("source",)  # added here = manual; directory ones come from group mappings


from departments.api_keys import admin as api_key_admin  # noqa: E402, F401  (API keys for the security administrator)
