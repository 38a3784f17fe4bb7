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
    from accounts.permissions import administrator_roles, administrators_filter

    try:
        superusers = User.objects.filter(is_superuser=True).count()
        roles = set(administrators_filter(User.objects).values_list("admin_role", flat=True))
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
    missing = administrator_roles() - roles
    if missing:
        problems.append(
            Warning(
                "Missing administrator role(s): " + ", ".join(sorted(missing)),
                hint="Create the three administrators with: manage.py init_admins",
                id="accounts.W001",
            )
        )
    return problems


@register(Tags.security)
def check_admin_networks_exclude_trusted_proxies(app_configs, **kwargs):
    """IP-1: an administration network must not contain (or overlap) a trusted proxy's addresses.

    Behind a proxy every request arrives from the proxy's address; were that address inside
    ADMIN_ALLOWED_NETWORKS, a request whose forwarded client address is missing or not believed
    would pass the allow-list as the proxy (with nginx on the same host: every client as
    127.0.0.1). Not a deploy-only check: ``manage.py serve`` and ``migrate`` refuse to start.
    """
    overlaps = [
        f"{admin} overlaps {proxy}"
        for admin in settings.ADMIN_ALLOWED_NETWORKS
        for proxy in settings.TRUSTED_PROXIES
        if admin.version == proxy.version and admin.overlaps(proxy)
    ]
    if not overlaps:
        return []
    return [
        Error(
            "ADMIN_ALLOWED_NETWORKS overlaps TRUSTED_PROXIES: " + "; ".join(overlaps),
            hint="Name the administrators' own subnet in ADMIN_ALLOWED_NETWORKS, without the proxy's address "
            "(e.g. 10.20.30.0/24 rather than loopback when nginx runs on the same host).",
            id="accounts.E002",
        )
    ]
