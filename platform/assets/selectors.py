"""Reads of assets, and THE access helper every path goes through (``asset_get``).

List, detail, download, thumbnail, delete, use in chat, use in the API: each fetches the asset
with ``asset_get`` (or ``asset_get_for_request``), never with its own query. An id that is not
in the caller's department — another department's, a deleted one, a malformed one — answers
the same 404 and leaves an ``access.denied`` entry in the audit trail.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from accounts.permissions import Action, RefusedNotFound, object_not_found
from assets.models import Asset
from departments.models import Department
from departments.tenancy import all_departments

ASSET_NOT_FOUND = _("No such file in this department.")


class AssetNotFound(RefusedNotFound):
    """Answered as 404 by Django and by DRF alike (both treat Http404 subclasses so)."""


def asset_list(*, department: Department) -> QuerySet[Asset]:
    """The department's files, newest first; runs inside the department's open scope."""
    return Asset.objects.filter(department=department).order_by("-created_at")


def _parse_id(asset_id: Any) -> uuid.UUID | None:
    if isinstance(asset_id, uuid.UUID):
        return asset_id
    try:
        return uuid.UUID(str(asset_id))
    except (TypeError, ValueError, AttributeError):
        return None


def asset_get(
    *, department: Department, asset_id: Any, actor: Any = None, purpose: str = "view", action: str = Action.ASSET_VIEW
) -> Asset:
    """The asset ``asset_id`` of ``department``, or AssetNotFound (404) with the denial audited.

    The department scoped manager adds the open scope's filter on top of the explicit
    ``department`` filter, so both must agree. ``purpose`` (view, download, delete, chat, api…)
    goes into the denial's audit entry, and ``action`` names the action refused (a REST view's
    own, for a key).
    """
    parsed = _parse_id(asset_id)
    asset = None
    if parsed is not None:
        asset = Asset.objects.filter(department=department, pk=parsed).select_related("department").first()
    if asset is not None:
        return asset
    reason = "no such file"
    if parsed is not None:
        with all_departments(reason="classify a refused asset id for the audit entry (never returned)"):
            if Asset.objects.filter(pk=parsed).exclude(department=department).exists():
                reason = "file of another department"
    else:
        reason = "malformed file id"
    raise object_not_found(
        action=action,
        subject=actor,
        model=Asset,
        object_id=str(asset_id)[:64],
        reason=reason,
        department=department,
        exception=AssetNotFound,
        purpose=purpose,
    )


def asset_get_for_request(request, asset_id: Any, *, purpose: str = "view", action: str = Action.ASSET_VIEW) -> Asset:
    """``asset_get`` for a ``/d/<slug>/`` request (the middleware set ``request.department``);
    ``action`` is the one the view is bound to, recorded when the file is not found."""
    return asset_get(
        department=request.department, asset_id=asset_id, actor=request.user, purpose=purpose, action=action
    )
