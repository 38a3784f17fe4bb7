"""The one least-recently-used store the documents code keeps its in-process caches with."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


def lru_put(cache: OrderedDict, key: Any, value: Any, limit: int) -> None:
    """Keep ``value`` under ``key`` as the most recently used entry, then drop the least recently
    used ones past ``limit``. The caller holds the cache's lock."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)
