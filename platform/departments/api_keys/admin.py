"""API keys in the administrators' console, for the security administrator: every department's
keys, read-only, with a revoke action (audited through ``api_key_revoke``). Keys are created in
the department portal (``/d/<slug>/api-keys/``) or with ``manage.py api_key_create``, where the
secret can be shown once."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from compliance.admin_audit import AuditedModelAdmin
from departments.api_keys.models import ApiKey, Scope
from departments.api_keys.services import api_key_revoke
from departments.tenancy import all_departments


@admin.register(ApiKey)
class ApiKeyAdmin(AuditedModelAdmin):
    list_display = (
        "prefix",
        "name",
        "department",
        "scope_labels",
        "expires_at",
        "last_used_at",
        "created_by_name",
        "revoked_at",
    )
    list_filter = ("department", "revoked_at")
    search_fields = ("prefix", "name", "created_by_name")
    # The scopes are shown by their names in the reader's language, not as the stored codes.
    readonly_fields = [
        "scope_labels" if field.name == "scopes" else field.name
        for field in ApiKey._meta.fields
        if field.name != "secret_hash"
    ]
    exclude = ("secret_hash", "scopes")
    actions = ["revoke"]

    def get_queryset(self, request):
        with all_departments(reason="the security administrator reviews API keys of every department"):
            return ApiKey._base_manager.select_related("department")

    @admin.display(description=_("scopes"))
    def scope_labels(self, key: ApiKey) -> str:
        names = dict(Scope.choices)
        return "; ".join(str(names.get(scope, scope)) for scope in key.scopes)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # revoked, never deleted: the trail names keys by their prefix

    @admin.action(description=_("Revoke the selected API keys"))
    def revoke(self, request, queryset):
        count = 0
        for key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(key=key, acting_user=request.user)
            count += 1
        messages.success(request, _("Revoked %(count)d keys.") % {"count": count})
