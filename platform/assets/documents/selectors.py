"""Reading the text layer. The text-layer job (``assets.documents.text_layer``) fills it in."""

from __future__ import annotations

from assets.documents.pages import DocumentText


def document_text(asset) -> DocumentText | None:
    """The asset's text layer, decrypted, or None while none is ready (not made yet, running,
    failed). Callers fall back to the first pages when there is none."""
    return None
