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
        from django.conf import settings
        from django.core.signals import request_started

        from assets import checks  # noqa: F401  (registers the system checks)
        from assets.documents.jobs import text_layer_sigterm_install, text_layer_sweep_once

        # Text layers left unfinished by a stopped process are queued again by the first request
        # this process serves (in a thread; never in management commands such as migrate), and
        # SIGTERM hands the job in hand back (docs/assets.md, "Text layer").
        request_started.connect(text_layer_sweep_once, dispatch_uid="assets.text_layer_sweep")
        if settings.TEXT_LAYER_WORKERS > 0:
            text_layer_sigterm_install()

        # purge_expired (compliance) calls every registered purger per department policy,
        # skipping departments under legal hold; files follow the policy's file_days.
        if importlib.util.find_spec("compliance.retention") is not None:
            from compliance.retention import register_purger

            register_purger("assets.files", retention_purger, days_field="file_days")
