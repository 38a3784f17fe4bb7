from django import forms
from django.contrib import admin

from accounts.admin_site import ServiceWritesAdmin, console_decide
from accounts.permissions import Action
from compliance.admin_audit import AuditedModelAdmin
from departments.models import ADMINISTRATOR_MEMBERSHIP_REFUSED, Department, Membership
from departments.services import membership_add, membership_change_role, membership_remove


@admin.register(Department)
class DepartmentAdmin(AuditedModelAdmin):
    list_display = ("slug", "name", "classification", "is_active", "created_at")
    list_filter = ("is_active", "classification")
    search_fields = ("slug", "name")
    # Labels (AC-7) belong to the security administrator (accounts.DepartmentLabel), and so do
    # memberships (data access): no membership inline here.
    readonly_fields = ("classification", "created_at")


class MembershipForm(forms.ModelForm):
    """Nobody holding an administrator role is given a membership (SM-1..3): the policy's answer,
    shown on the form and recorded once the console's transaction is over."""

    console_request = None  # set per request by MembershipAdmin.get_form

    class Meta:
        model = Membership
        fields = ["user", "department", "role"]

    def clean_user(self):
        user = self.cleaned_data["user"]
        decision = console_decide(
            self.console_request,
            user,
            Action.DEPARTMENT_ACCESS_HOLD,
            object_type=user._meta.label_lower,
            object_id=user.pk,
            object_repr=user.get_username(),
        )
        if not decision:
            raise forms.ValidationError(ADMINISTRATOR_MEMBERSHIP_REFUSED)
        return user


@admin.register(Membership)
class MembershipAdmin(ServiceWritesAdmin):
    """The security administrator's page of department access. Writes go through the membership
    services, which audit them (``membership.add`` / ``.change`` / ``.remove``) and refuse on
    their own (recorded) when the answer changed after the form's check."""

    form = MembershipForm
    list_display = ("user", "department", "role", "source", "created_at")
    list_select_related = ("user", "department")  # the list, and each row "delete selected" removes
    list_filter = ("role", "source", "department")
    search_fields = ("user__username", "department__slug")
    readonly_fields = ("source",)  # added here = manual; directory ones come from group mappings

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)  # a new class per request
        form.console_request = request
        return form

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:  # a membership changes its role; another person or department is a new one
            return ("user", "department", "source")
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            role = obj.role
            obj.role = form.initial.get("role", role)
            membership_change_role(membership=obj, role=role, acting_user=request.user)
            return
        created = membership_add(
            user=obj.user, department=obj.department, role=obj.role, source=obj.source, acting_user=request.user
        )
        obj.pk, obj.created_at = created.pk, created.created_at

    def delete_model(self, request, obj):
        membership_remove(membership=obj, acting_user=request.user)


from departments.api_keys import admin as api_key_admin  # noqa: E402, F401  (API keys for the security administrator)
