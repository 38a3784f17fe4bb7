from django.contrib.admin.apps import AdminConfig


class PlatformAdminConfig(AdminConfig):
    """Django's admin with the platform's site (role checks, networks, two-factor)."""

    default_site = "accounts.admin_site.PlatformAdminSite"
