"""The console pages of accounts; who sees which is decided by ``accounts.permissions``."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import SetUnusablePasswordMixin
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.admin_site import console_refusal_defer
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
from accounts.permissions import (
    Action,
    RefusedForbidden,
    administrator_role_decide,
    allowed,
    authorize_request,
)
from accounts.two_factor import two_factor_remove
from compliance.admin_audit import AuditedModelAdmin
from compliance.events import EventType

DIRECTORY_ACCOUNT_NO_ROLE = _("Administrator roles are for local accounts only.")
ROLE_FOR_ACCESS_HOLDER_REFUSED = _(
    "This account holds department memberships or API keys: remove them before giving it an administrator role."
)


class ConsolePasswordChangeForm(AuditedAdminPasswordChangeForm):
    """Django's form joins its two help texts with ``+`` when its module is imported, which
    translates them once, in whatever language was active then (and leaves the warning in English):
    joined lazily here, they follow the reader's language."""

    usable_password_help_text = format_lazy(
        '{}<ul id="id_unusable_warning" class="messagelist"><li class="warning">{}</li></ul>',
        SetUnusablePasswordMixin.usable_password_help_text,
        _("If disabled, the current password for this user will be lost."),
    )


@admin.display(description=_("full name"))
def full_name(user: User) -> str:
    return user.get_full_name()


@admin.register(User)
class UserAdmin(AuditedModelAdmin, DjangoUserAdmin):
    """The system administrator's users page. Administrator accounts are read-only here: the
    system administrator must not be able to reset the security or audit administrator's
    password and sign in as them (三权分立)."""

    list_display = ("username", full_name, "source", "admin_role", "is_active", "last_login")
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
    change_password_form = ConsolePasswordChangeForm
    actions = ["unlock_accounts", "reset_two_factor"]
    filter_horizontal = ()

    def has_change_permission(self, request, obj=None):
        # Not an administrator's account, the system administrator's own included (the table's
        # USER_MANAGE): read-only here, and a change or its password page is refused.
        if obj is not None and not allowed(request.user, Action.USER_MANAGE, account=obj):
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
        authorize_request(request, Action.LOCK_RELEASE)
        released = sum(lock_release_for_user(user=user, acting_user=request.user) for user in queryset)
        self.message_user(request, _("%(n)d lock(s) lifted.") % {"n": released}, messages.SUCCESS)

    @admin.action(description=_("Reset two-factor authentication (the user enrols again)"))
    def reset_two_factor(self, request, queryset):
        authorize_request(request, Action.TWO_FACTOR_RESET)
        _two_factor_reset(self, request, queryset)


def _two_factor_reset(model_admin, request, queryset) -> None:
    """Reset the second factor of the accounts allowed; each refusal (an administrator's account
    for the system administrator, one's own) is recorded and named, the rest go ahead."""
    reset = 0
    for user in queryset:
        try:
            two_factor_remove(user=user, acting_user=request.user)
        except RefusedForbidden as refusal:
            model_admin.message_user(request, f"{user.get_username()}: {_(str(refusal))}", messages.ERROR)
        else:
            reset += 1
    if reset:
        model_admin.message_user(
            request,
            _("Two-factor authentication was reset for %(n)d account(s).") % {"n": reset},
            messages.SUCCESS,
        )


class AdministratorRoleForm(forms.ModelForm):
    class Meta:
        model = AdministratorRole
        fields = ["admin_role"]

    console_request = None  # set per request by AdministratorRoleAdmin.get_form

    def clean_admin_role(self):
        role = self.cleaned_data["admin_role"]
        # What the account can hold at all (the database's user_admin_role_local_only constraint:
        # no role, or a local account), answered before the save with a message.
        if role and self.instance.source != AccountSource.LOCAL:
            raise forms.ValidationError(DIRECTORY_ACCOUNT_NO_ROLE)
        # Administrators hold no department data (SM-1..3): a member becomes one only without it.
        decision = administrator_role_decide(self.instance, role)
        if not decision:
            console_refusal_defer(
                self.console_request,
                decision,
                action=Action.ROLE_ASSIGN,
                object_type=self.instance._meta.label_lower,
                object_id=self.instance.pk,
                object_repr=self.instance.get_username(),
                role=role,
            )
            raise forms.ValidationError(ROLE_FOR_ACCESS_HOLDER_REFUSED)
        return role


@admin.register(AdministratorRole)
class AdministratorRoleAdmin(AuditedModelAdmin):
    """The security administrator assigns the administrator roles (one per account by design)."""

    audit_event_type = EventType.ROLE_CHANGE
    form = AdministratorRoleForm
    list_display = ("username", full_name, "source", "admin_role", "is_active")
    list_filter = ("admin_role", "source")
    search_fields = ("username", "first_name", "last_name")
    fields = ("username", "first_name", "last_name", "source", "admin_role")
    readonly_fields = ("username", "first_name", "last_name", "source")

    actions = ["reset_administrator_two_factor"]

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)  # a new class per request
        form.console_request = request
        return form

    def has_change_permission(self, request, obj=None):
        # Nobody moves themselves between the three roles (the table's ROLE_ASSIGN).
        if obj is not None and not allowed(request.user, Action.ROLE_ASSIGN, account=obj):
            return False
        return super().has_change_permission(request, obj)

    def has_add_permission(self, request):
        return False

    @admin.action(description=_("Reset two-factor authentication (the administrator enrols again)"))
    def reset_administrator_two_factor(self, request, queryset):
        authorize_request(request, Action.ADMIN_TWO_FACTOR_RESET)
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


# Pages that other apps register (before this module: INSTALLED_APPS order) but that the policy
# table grants to nobody: groups grant nothing here, second factors are reset through the
# actions above. Off the console entirely, so nothing on it is unbound.
for _model in (Group, TOTPDevice, StaticDevice):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
