from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AdminPasswordChangeForm, SetPasswordForm
from django.db import transaction
from django.utils.translation import gettext_lazy as _

from compliance.events import EventType
from compliance.services import audit_record


class LoginForm(forms.Form):
    username = forms.CharField(label=_("User name"), max_length=150)
    password = forms.CharField(label=_("Password"), strip=False, widget=forms.PasswordInput)


class TokenForm(forms.Form):
    token = forms.CharField(
        label=_("Code"),
        max_length=16,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )


class PasswordRenewForm(SetPasswordForm):
    """New password (validated by AUTH_PASSWORD_VALIDATORS); saved through the password service."""

    def save(self, commit: bool = True):
        from accounts.passwords import password_set

        password_set(user=self.user, raw_password=self.cleaned_data["new_password1"], acting_user=self.user)
        return self.user


class PasswordChangeForm(PasswordRenewForm):
    """Self-service change: the current password first, and a current code for administrators.

    The form only checks their shape; the sign-in pipeline (``accounts.login.step_up_check``)
    checks them, so that wrong answers are audited and count toward the lock.
    """

    old_password = forms.CharField(
        label=_("Current password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password", "autofocus": True}),
    )
    field_order = ["old_password", "token", "new_password1", "new_password2"]

    def __init__(self, user, *args, code_required: bool, **kwargs):
        super().__init__(user, *args, **kwargs)
        if code_required:
            self.fields["token"] = forms.CharField(
                label=_("Code"), max_length=16, widget=forms.TextInput(attrs={"autocomplete": "one-time-code"})
            )
            self.order_fields(self.field_order)


class AuditedAdminPasswordChangeForm(AdminPasswordChangeForm):
    """The console's "change password" for a user: audited, and the owner must change it again."""

    def save(self, commit: bool = True):
        from accounts.passwords import password_set

        with transaction.atomic():
            if not self.cleaned_data.get("set_usable_password", True):
                user = super().save(commit=commit)
                audit_record(event_type=EventType.PASSWORD_CHANGE, obj=user, details={"unusable": True})
                return user
            # acting_user=None: the audit entry names the administrator of the current request.
            password_set(user=self.user, raw_password=self.cleaned_data["password1"], must_change=True)
        return self.user
