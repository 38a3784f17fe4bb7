"""ASGI launcher at the repository root: ``uvicorn asgi:application``.

It puts ``platform/`` on the import path first (see manage.py for why it is not a package).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "platform"))

from config.asgi import application

__all__ = ["application"]
