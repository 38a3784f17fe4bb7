"""Hub access is impossible by construction: the offline switches are set before transformers loads.

Imported first by ``inference/__init__.py`` (and the same variables are set by the settings
module), so whichever of them runs first, ``huggingface_hub`` reads its constants with the
offline flags already in place. Assignment, not ``setdefault``: an inherited
``HF_HUB_OFFLINE=0`` must not re-open the door.
"""

from __future__ import annotations

import os

OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "DO_NOT_TRACK": "1",
}


def enforce_offline() -> None:
    os.environ.update(OFFLINE_ENVIRONMENT)


enforce_offline()
