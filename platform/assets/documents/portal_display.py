"""What the portal's file pages show of the text layer: status and progress (list, detail, the
status poll of ``static/js/assets.js``) and each page's text (detail page, escaped by the
template). Runs inside the department scope the middleware opened."""

from __future__ import annotations

import uuid
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from assets.documents.api import text_layer_status
from assets.documents.jobs import text_layer_abandoned, text_layer_enqueue, text_layer_look
from assets.documents.models import TextLayer, TextLayerStatus
from assets.documents.text_layer import document_from_json, failure_message
from assets.models import Asset


def status_label(layer: TextLayer) -> str:
    """One line a person reads: what the text layer is doing, or why it failed."""
    if layer.status == TextLayerStatus.RUNNING:
        return _("Reading text: page %(done)s of %(total)s") % {"done": layer.pages_done, "total": layer.pages_total}
    if layer.status == TextLayerStatus.DONE:
        sources = layer.sources or {}
        return ngettext(
            "Text ready: %(pages)s page (%(ocr)s by OCR)",
            "Text ready: %(pages)s pages (%(ocr)s by OCR)",
            layer.pages_total,
        ) % {"pages": layer.pages_total, "ocr": sources.get("ocr", 0)}
    if layer.status == TextLayerStatus.FAILED:
        return _("Text not read: %(reason)s") % {"reason": failure_message(layer.failure, layer.failure_params)}
    return _("Waiting to read the text")


def _status(layer: TextLayer) -> dict[str, Any]:
    return {**text_layer_status(layer), "label": status_label(layer)}


def text_layer_list_attach(assets: list[Asset]) -> list[Asset]:
    """Each file of the list gets ``text_layer_status`` (made for a file that has none yet; an
    abandoned job is queued again: the list is one of the looks that resume it)."""
    layers = {
        layer.asset_id: layer
        for layer in TextLayer.objects.filter(asset__in=[asset.pk for asset in assets]).defer("pages")
    }
    for asset in assets:
        layer = layers.get(asset.pk)
        if layer is None:
            layer = text_layer_look(asset)
        elif text_layer_abandoned(layer):
            text_layer_enqueue(layer.pk)
        asset.text_layer_status = _status(layer)
    return assets


def text_layer_context(asset: Asset) -> dict[str, Any]:
    """The detail page's text layer: its status and, once done, its pages (decrypted here,
    rendered escaped)."""
    layer = text_layer_look(asset)
    pages = document_from_json(layer.pages).pages if layer.status == TextLayerStatus.DONE else None
    return {"text_layer_status": _status(layer), "text_pages": pages}


def text_layer_statuses(ids: list[str]) -> dict[str, dict[str, Any]]:
    parsed = []
    for value in ids:
        try:
            parsed.append(uuid.UUID(str(value)))
        except ValueError:
            continue
    statuses = {}
    for layer in TextLayer.objects.filter(asset_id__in=parsed).defer("pages"):
        if text_layer_abandoned(layer):
            text_layer_enqueue(layer.pk)
        statuses[str(layer.asset_id)] = _status(layer)
    return statuses
