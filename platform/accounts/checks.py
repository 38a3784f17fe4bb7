"""System checks for identity: no superusers in production, the three administrators exist."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import DatabaseError


@register(Tags.security, deploy=True)
def check_administrator_accounts(app_configs, databases=None, **kwargs):
    """Needs the database: run ``manage.py check --deploy --database default``."""
    if not databases:
        return []
    from accounts.models import User
    from accounts.roles import AdminRole

    try:
        superusers = User.objects.filter(is_superuser=True).count()
        roles = set(User.objects.exclude(admin_role="").values_list("admin_role", flat=True))
    except DatabaseError:
        return []
    problems = []
    if superusers and settings.IS_PRODUCTION:
        problems.append(
            Error(
                f"{superusers} superuser account(s) exist; production uses the three administrator roles only.",
                hint="Clear is_superuser on them (they are ignored by the permission layer anyway).",
                id="accounts.E001",
            )
        )
    missing = {AdminRole.SYSTEM, AdminRole.SECURITY, AdminRole.AUDIT} - roles
    if missing:
        problems.append(
            Warning(
                "Missing administrator role(s): " + ", ".join(sorted(missing)),
                hint="Create the three administrators with: manage.py init_admins",
                id="accounts.W001",
            )
        )
    return problems
