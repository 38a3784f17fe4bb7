"""System checks: the master key ring must be readable (and, in production, present)."""

from __future__ import annotations

from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured


@register(Tags.security)
def asset_master_key_check(app_configs, **kwargs):
    from django.conf import settings

    from assets.keyring import keyring_load, keyring_path

    if not settings.IS_PRODUCTION and not keyring_path().exists():
        return []  # generated on first use outside production
    try:
        keyring_load()
    except (ImproperlyConfigured, OSError) as exc:
        return [Error(str(exc), hint="See docs/assets.md, 'Master keys'.", id="assets.E001")]
    return []
