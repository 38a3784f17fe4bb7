"""The per-user chat turn limit (``CHAT_TURNS_PER_MINUTE``), counted in the database.

A sliding window of one minute over ``ChatTurnStamp`` rows. The user's row is locked while
counting, so two server processes admitting turns for the same person queue behind each other
instead of both reading "one turn left" (on SQLite the IMMEDIATE transaction mode serialises).
"""

from __future__ import annotations

import math
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from inference.models import ChatTurnStamp

WINDOW = timedelta(minutes=1)
SWEEP_ONE_IN = 20


@transaction.atomic
def chat_turn_admit(*, user: Any, limit: int, now: datetime | None = None) -> int:
    """0 when a turn may start (and it is counted), else the seconds to wait before retrying."""
    now = now or timezone.now()
    get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True).first()
    recent = list(
        ChatTurnStamp.objects.filter(user=user, started_at__gte=now - WINDOW)
        .order_by("started_at")
        .values_list("started_at", flat=True)[: max(limit, 1)]
    )
    if len(recent) >= limit:
        # Old stamps are swept on refusals (and now and then below), not on every turn: one
        # query less on the path to the first token.
        ChatTurnStamp.objects.filter(user=user, started_at__lt=now - WINDOW).delete()
        return max(1, math.ceil((recent[0] + WINDOW - now).total_seconds()))
    if secrets.randbelow(SWEEP_ONE_IN) == 0:
        ChatTurnStamp.objects.filter(user=user, started_at__lt=now - WINDOW).delete()
    ChatTurnStamp.objects.create(user=user, started_at=now)
    return 0
