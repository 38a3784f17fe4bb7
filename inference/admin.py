"""Registers the inference app's console pages (Django's admin autodiscovery imports this)."""

from inference.chat import admin as chat_admin  # noqa: F401
from inference.registry import admin as registry_admin  # noqa: F401
