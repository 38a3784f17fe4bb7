"""Reading the text layer. The text-layer job (``assets.documents.jobs``) fills it in."""

from __future__ import annotations

from assets.documents.pages import DocumentText


def document_text(asset) -> DocumentText | None:
    """The asset's text layer, decrypted, or None while none is ready (not made yet, running,
    failed). Callers fall back to the first pages when there is none. Runs inside the asset's
    department scope (the caller got the asset through ``assets.selectors.asset_get``)."""
    from assets.documents.models import TextLayer, TextLayerStatus
    from assets.documents.text_layer import document_from_json

    layer = TextLayer.objects.filter(asset=asset, status=TextLayerStatus.DONE).first()
    if layer is None or layer.pages is None:
        return None
    return document_from_json(layer.pages)
