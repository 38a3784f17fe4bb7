"""The compliance report's checks: 个人信息保护 personal information (PI-1, PI-2)."""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext_noop as _

from compliance.report import Evidence, control, line, not_applicable
from compliance.report_checks.live import (
    NONE,
    listing,
)


@control("PI-1", _("Only the personal data the business needs"))
def check_pi1() -> list[Evidence]:
    if not getattr(settings, "LDAP_ENABLED", False):
        return [not_applicable(_("directory login is off: no directory attributes are copied"))]
    attributes = sorted(getattr(settings, "AUTH_LDAP_USER_ATTR_MAP", {}) or {})
    allowed = {"first_name", "last_name", "email", "employee_number"}
    return [
        line(
            set(attributes) <= allowed,
            _("directory attributes kept: {attributes}; beyond the business need: {extra}"),
            attributes=listing(attributes) or NONE,
            extra=listing(sorted(set(attributes) - allowed)) or NONE,
        )
    ]


@control("PI-2", _("No unauthorised access to personal data"))
def check_pi2() -> list[Evidence]:
    from assets.models import Asset
    from compliance.masking import mask_identifiers
    from departments.tenancy import ScopeError

    sample = mask_identifiers("110101199003077777 13800138000")
    try:
        Asset.objects.count()
        refused = False
    except ScopeError:
        refused = True
    return [
        line(
            "199003" not in sample and "0013800" not in sample,
            _("identifiers masked in previews: {sample}"),
            sample=sample,
        ),
        line(refused, _("a query of files outside a department scope is refused: {refused}"), refused=refused),
    ]
