from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.roles import MembershipRole


class Classification(models.IntegerChoices):
    """Security labels (安全标记, AC-7), ordered so that a higher value is more sensitive."""

    PUBLIC = 0, _("Public (公开)")
    INTERNAL = 1, _("Internal (内部)")
    CONFIDENTIAL = 2, _("Confidential (秘密)")
    SECRET = 3, _("Secret (机密)")


slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$",
    _("Use 1-50 lower-case letters, digits and inner hyphens."),
)


class Department(models.Model):
    """A tenant: its members, files, conversations, keys and policies stay inside it."""

    slug = models.SlugField(_("slug"), max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(_("name"), max_length=200)
    is_active = models.BooleanField(_("active"), default=True)
    classification = models.PositiveSmallIntegerField(
        _("classification"), choices=Classification.choices, default=Classification.INTERNAL
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("department")
        verbose_name_plural = _("departments")

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"


ADMINISTRATOR_MEMBERSHIP_REFUSED = _(
    "An administrator account cannot be a department member: administrators hold no department data."
)


class MembershipSource(models.TextChoices):
    MANUAL = "manual", _("Added by an administrator")
    DIRECTORY = "directory", _("Directory group mapping")


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("user")
    )
    department = models.ForeignKey(
        Department, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("department")
    )
    role = models.CharField(_("role"), max_length=16, choices=MembershipRole.choices, default=MembershipRole.MEMBER)
    source = models.CharField(
        _("source"), max_length=16, choices=MembershipSource.choices, default=MembershipSource.MANUAL
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "department"], name="membership_unique_user_department")]
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")

    def __str__(self) -> str:
        # Names only: this is also the object name the trail freezes, in no reader's language;
        # the role has its own (translated) column, and the trail records it in the details.
        return f"{self.user} @ {self.department.slug}"

    def clean(self) -> None:
        # Also refused by the services (recorded) and by the database (departments/triggers.py).
        from accounts.permissions import Action, allowed

        if self.user_id is not None and not allowed(self.user, Action.DEPARTMENT_ACCESS_HOLD):
            raise ValidationError({"user": ADMINISTRATOR_MEMBERSHIP_REFUSED})


# API keys live in their own package; imported here so Django registers the model.
from departments.api_keys.models import ApiKey  # noqa: E402, F401
