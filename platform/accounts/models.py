from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _


class AdminRole(models.TextChoices):
    """The three separated administrators of MLPS Level 3 (三权分立).

    A single field makes "no account holds two of these roles" true by construction.
    """

    NONE = "", _("None")
    SYSTEM = "system", _("System administrator")
    SECURITY = "security", _("Security administrator")
    AUDIT = "audit", _("Audit administrator")


class AccountSource(models.TextChoices):
    LOCAL = "local", _("Local account")
    DIRECTORY = "directory", _("Directory (LDAP/AD)")


class User(AbstractUser):
    admin_role = models.CharField(
        _("administrator role"), max_length=16, choices=AdminRole.choices, default="", blank=True
    )
    source = models.CharField(
        _("account source"), max_length=16, choices=AccountSource.choices, default=AccountSource.LOCAL
    )
    employee_number = models.CharField(_("employee number"), max_length=64, blank=True)
    password_changed_at = models.DateTimeField(_("password changed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")

    @property
    def is_platform_admin(self) -> bool:
        return bool(self.admin_role)
