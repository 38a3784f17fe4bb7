from __future__ import annotations

import importlib.util
import logging

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

logger = logging.getLogger(__name__)


class AssetsConfig(AppConfig):
    name = "assets"
    verbose_name = _("Files")

    def ready(self) -> None:
        from assets import checks  # noqa: F401  (registers the system checks)

        # The retention purge (compliance) calls every registered purger; register ours if the
        # registry exists in this build. See docs/assets.md, "Retention".
        if importlib.util.find_spec("compliance.retention") is not None:
            from compliance import retention

            register = getattr(retention, "register_purger", None)
            if register is not None:
                from assets.services import asset_purge_expired

                register("assets", asset_purge_expired)
