"""WSGI launcher at the repository root: ``gunicorn wsgi:application``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "platform"))

from config.wsgi import application

__all__ = ["application"]
