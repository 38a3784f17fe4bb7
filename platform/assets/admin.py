from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from assets.models import Asset
from compliance.admin_audit import AuditedModelAdmin
from departments.tenancy import all_departments


@admin.register(Asset)
class AssetAdmin(AuditedModelAdmin):
    """Metadata only: the system administrator sees what exists, never the content."""

    list_display = (
        "file_name",
        "department",
        "content_type",
        "size",
        "classification",
        "uploaded_by_name",
        "created_at",
    )
    list_filter = ("department", "content_type", "classification")
    # The file name is sealed (assets.text_crypto): SQL can neither search nor sort it.
    search_fields = ("sha256",)
    readonly_fields = [
        f.name for f in Asset._meta.fields if f.name not in {"classification", "wrapped_key", "text_key", "text_key_id"}
    ]
    exclude = ("wrapped_key", "text_key", "text_key_id")

    @admin.display(description=_("file name"))
    def file_name(self, asset: Asset) -> str:
        return asset.original_name

    def get_queryset(self, request):
        # The scoped manager refuses unscoped queries; the console spans departments on purpose.
        with all_departments(reason="administration console lists files of every department"):
            return Asset._base_manager.all()

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # deleting is crypto-shredding through the service, never a row delete
