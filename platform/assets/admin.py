from __future__ import annotations

from django.contrib import admin

from assets.models import Asset
from compliance.admin_audit import AuditedModelAdmin
from departments.tenancy import all_departments


@admin.register(Asset)
class AssetAdmin(AuditedModelAdmin):
    """Metadata only: the system administrator sees what exists, never the content."""

    list_display = (
        "original_name",
        "department",
        "content_type",
        "size",
        "classification",
        "uploaded_by_name",
        "created_at",
    )
    list_filter = ("department", "content_type", "classification")
    search_fields = ("original_name", "sha256")
    readonly_fields = [f.name for f in Asset._meta.fields if f.name not in {"classification", "wrapped_key"}]
    exclude = ("wrapped_key",)

    def get_queryset(self, request):
        # The scoped manager refuses unscoped queries; the console spans departments on purpose.
        with all_departments(reason="administration console lists files of every department"):
            return Asset._base_manager.all()

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # deleting is crypto-shredding through the service, never a row delete
