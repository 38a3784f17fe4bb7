"""The console pages of accounts; who sees which is decided by ``accounts.permissions``."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.forms import AuditedAdminPasswordChangeForm
from accounts.lockout import lock_release, lock_release_for_user
from accounts.login_policy import policy_from_settings
from accounts.models import (
    AccountSource,
    AdministratorRole,
    DepartmentLabel,
    DirectoryGroupMapping,
    LoginThrottle,
    SecurityPolicy,
    User,
)
from accounts.permissions import Action, admin_action_allowed
from accounts.two_factor import two_factor_remove, two_factor_remove_refusal
from compliance.admin_audit import AuditedModelAdmin
from compliance.events import EventType, Outcome
from compliance.services import audit_record

ADMIN_ACCOUNT_READ_ONLY = _("Administrator accounts are not managed here.")
DIRECTORY_ACCOUNT_NO_ROLE = _("Administrator roles are for local accounts only.")
OWN_ROLE_REFUSED = _("You cannot change your own administrator role.")


@admin.register(User)
class UserAdmin(AuditedModelAdmin, DjangoUserAdmin):
    """The system administrator's users page. Administrator accounts are read-only here: the
    system administrator must not be able to reset the security or audit administrator's
    password and sign in as them (三权分立)."""

    list_display = ("username", "get_full_name", "source", "admin_role", "is_active", "last_login")
    list_filter = ("source", "admin_role", "is_active")
    search_fields = ("username", "first_name", "last_name", "email", "employee_number")
    ordering = ("username",)
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        (_("Personal info"), {"fields": ("first_name", "last_name", "email", "employee_number")}),
        (_("Status"), {"fields": ("is_active", "source", "admin_role", "must_change_password")}),
        (_("Dates"), {"fields": ("last_login", "date_joined", "password_changed_at")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "first_name", "last_name", "email", "password1", "password2"),
            },
        ),
    )
    readonly_fields = ("source", "admin_role", "last_login", "date_joined", "password_changed_at")
    change_password_form = AuditedAdminPasswordChangeForm
    actions = ["unlock_accounts", "reset_two_factor"]
    filter_horizontal = ()

    def has_change_permission(self, request, obj=None):
        if obj is not None and (obj.admin_role or obj.pk == request.user.pk):
            return False
        return super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        if not change:
            # The administrator chose this password: its owner replaces it at first sign-in.
            obj.source = AccountSource.LOCAL
            obj.must_change_password = True
            obj.password_changed_at = timezone.now()
        super().save_model(request, obj, form, change)

    @admin.action(description=_("Unlock the selected accounts"))
    def unlock_accounts(self, request, queryset):
        if not admin_action_allowed(request.user, Action.LOCK_RELEASE):
            raise PermissionError
        released = sum(lock_release_for_user(user=user, acting_user=request.user) for user in queryset)
        self.message_user(request, _("%(n)d lock(s) lifted.") % {"n": released}, messages.SUCCESS)

    @admin.action(description=_("Reset two-factor authentication (the user enrols again)"))
    def reset_two_factor(self, request, queryset):
        if not admin_action_allowed(request.user, Action.TWO_FACTOR_RESET):
            raise PermissionError
        _two_factor_reset(self, request, queryset)


def _two_factor_reset(model_admin, request, queryset) -> None:
    """Reset the second factor of the accounts allowed; refusals (administrators' accounts for
    the system administrator, one's own) are audited and named, the rest go ahead."""
    allowed, refused = [], []
    for user in queryset:
        reason = two_factor_remove_refusal(user=user, acting_user=request.user)
        (allowed if reason is None else refused).append((user, reason))
    for user, reason in refused:  # recorded outside the transaction below: a denial stays on record
        audit_record(
            event_type=EventType.ACCESS_DENIED,
            outcome=Outcome.DENIED,
            actor=request.user,
            obj=user,
            details={"action": Action.TWO_FACTOR_RESET.value, "reason": reason},
        )
        model_admin.message_user(request, f"{user.get_username()}: {_(reason)}", messages.ERROR)
    with transaction.atomic():
        for user, _reason in allowed:
            two_factor_remove(user=user, acting_user=request.user)
    if allowed:
        model_admin.message_user(
            request,
            _("Two-factor authentication was reset for %(n)d account(s).") % {"n": len(allowed)},
            messages.SUCCESS,
        )


class AdministratorRoleForm(forms.ModelForm):
    class Meta:
        model = AdministratorRole
        fields = ["admin_role"]

    def clean_admin_role(self):
        role = self.cleaned_data["admin_role"]
        if role and self.instance.source != AccountSource.LOCAL:
            raise forms.ValidationError(DIRECTORY_ACCOUNT_NO_ROLE)
        return role


@admin.register(AdministratorRole)
class AdministratorRoleAdmin(AuditedModelAdmin):
    """The security administrator assigns the administrator roles (one per account by design)."""

    audit_event_type = EventType.ROLE_CHANGE
    form = AdministratorRoleForm
    list_display = ("username", "get_full_name", "source", "admin_role", "is_active")
    list_filter = ("admin_role", "source")
    search_fields = ("username", "first_name", "last_name")
    fields = ("username", "first_name", "last_name", "source", "admin_role")
    readonly_fields = ("username", "first_name", "last_name", "source")

    actions = ["reset_administrator_two_factor"]

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.pk == request.user.pk:
            return False  # nobody moves themselves between the three roles
        return super().has_change_permission(request, obj)

    def has_add_permission(self, request):
        return False

    @admin.action(description=_("Reset two-factor authentication (the administrator enrols again)"))
    def reset_administrator_two_factor(self, request, queryset):
        if not admin_action_allowed(request.user, Action.ADMIN_TWO_FACTOR_RESET):
            raise PermissionError
        _two_factor_reset(self, request, queryset)

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DepartmentLabel)
class DepartmentLabelAdmin(AuditedModelAdmin):
    """Security labels (AC-7) are the security administrator's, not the system administrator's."""

    list_display = ("slug", "name", "classification", "is_active")
    list_filter = ("classification",)
    search_fields = ("slug", "name")
    fields = ("slug", "name", "classification")
    readonly_fields = ("slug", "name")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DirectoryGroupMapping)
class DirectoryGroupMappingAdmin(AuditedModelAdmin):
    audit_event_type = EventType.GROUP_MAPPING_CHANGE
    list_display = ("group_dn", "department", "role", "created_at")
    list_filter = ("role", "department")
    search_fields = ("group_dn", "department__slug")


@admin.register(LoginThrottle)
class LoginThrottleAdmin(admin.ModelAdmin):
    """Locked accounts and addresses; deleting a row lifts the lock (audited as auth.unlock)."""

    list_display = ("kind", "key", "failures", "last_failure_at", "locked_until")
    list_filter = ("kind",)
    search_fields = ("key",)
    readonly_fields = ("kind", "key", "failures", "first_failure_at", "last_failure_at", "locked_until")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        lock_release(throttle=obj, acting_user=request.user)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset.select_for_update():
                lock_release(throttle=obj, acting_user=request.user)


@admin.register(SecurityPolicy)
class SecurityPolicyAdmin(AuditedModelAdmin):
    """One row; the database refuses values weaker than MLPS Level 3 (see the model)."""

    audit_event_type = EventType.SECURITY_SETTING_CHANGE
    list_display = (
        "__str__",
        "login_max_failures",
        "login_lockout_seconds",
        "session_idle_seconds",
        "password_max_age_days",
        "updated_at",
    )

    def has_add_permission(self, request):
        return super().has_add_permission(request) and not SecurityPolicy.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def get_changeform_initial_data(self, request):
        current = policy_from_settings()
        return {
            "login_max_failures": current.login_max_failures,
            "login_lockout_seconds": current.login_lockout_seconds,
            "session_idle_seconds": current.session_idle_seconds,
            "password_max_age_days": current.password_max_age_days,
        }
