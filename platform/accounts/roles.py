"""The roles a person can hold: one of the three separated administrators, or a role inside a
department. A leaf module (Django's model enums only), so every app can import it without cycles.

Only ``accounts.permissions`` compares roles; everything else asks it.
"""

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


class MembershipRole(models.TextChoices):
    MEMBER = "member", _("Member")
    ADMIN = "admin", _("Department administrator")
