from __future__ import annotations

import importlib.util

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


def retention_purger(department, policy, cutoff, dry_run: bool) -> int:
    """The shape ``compliance.retention`` calls: crypto-shred files older than ``cutoff``."""
    from assets.services import asset_purge_expired

    return asset_purge_expired(department=department, cutoff=cutoff, dry_run=dry_run)


class AssetsConfig(AppConfig):
    name = "assets"
    verbose_name = _("Files")

    def ready(self) -> None:
        from assets import checks  # noqa: F401  (registers the system checks)

        # purge_expired (compliance) calls every registered purger per department policy,
        # skipping departments under legal hold; files follow the policy's file_days.
        if importlib.util.find_spec("compliance.retention") is not None:
            from compliance.retention import register_purger

            register_purger("assets.files", retention_purger, days_field="file_days")
