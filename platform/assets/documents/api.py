"""The text layer through the REST API: ``GET /api/v1/assets/<id>/text`` (the pages, their lines
and boxes) and the ``text_layer`` status object that ``GET /api/v1/assets/<id>`` and the portal's
status poll carry. Reading the text is audited like a detail view (``asset.view``); another
department's id answers 404 through ``asset_get``.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from accounts.permissions import Action
from assets.documents.jobs import text_layer_look
from assets.documents.models import TextLayer, TextLayerStatus
from assets.documents.text_layer import failure_message
from assets.selectors import asset_get
from compliance.events import EventType
from compliance.services import audit_record
from departments.api_keys.authentication import ApiKeyView


class TextLayerFailureSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class TextLayerStatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=TextLayerStatus.values)
    pages_done = serializers.IntegerField()
    pages_total = serializers.IntegerField()
    sources = serializers.DictField(child=serializers.IntegerField(), help_text="Pages by source: pdf, ocr, none.")
    failure = TextLayerFailureSerializer(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class TextLineSerializer(serializers.Serializer):
    text = serializers.CharField()
    box = serializers.ListField(
        child=serializers.FloatField(), help_text="x0, y0, x1, y1 in pixels of the page image (origin top left)."
    )
    confidence = serializers.FloatField()


class TextPageSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    source = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    usable = serializers.BooleanField()
    lines = TextLineSerializer(many=True)


class AssetTextSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    text_layer = TextLayerStatusSerializer()
    pages = TextPageSerializer(many=True, allow_null=True, help_text="Null until the text layer is done.")


_DATETIME = serializers.DateTimeField()


def text_layer_status(layer: TextLayer) -> dict[str, Any]:
    """The layer's status object (no text of the document)."""
    failure = None
    if layer.status == TextLayerStatus.FAILED:
        failure = {"code": layer.failure, "message": failure_message(layer.failure, layer.failure_params)}
    return {
        "status": layer.status,
        "pages_done": layer.pages_done,
        "pages_total": layer.pages_total,
        "sources": dict(layer.sources or {}),
        "failure": failure,
        "finished_at": _DATETIME.to_representation(layer.finished_at) if layer.finished_at else None,
    }


def text_pages_json(layer: TextLayer) -> list[dict[str, Any]] | None:
    if layer.status != TextLayerStatus.DONE or layer.pages is None:
        return None
    return [
        {
            **{key: page[key] for key in ("number", "source", "width", "height", "usable")},
            "lines": [{"text": text, "box": box, "confidence": confidence} for text, box, confidence in page["lines"]],
        }
        for page in layer.pages
    ]


class AssetTextView(ApiKeyView):
    required_action = Action.API_ASSETS_READ

    @extend_schema(
        summary="A file's text layer: each page's lines with their boxes", responses={200: AssetTextSerializer}
    )
    def get(self, request, asset_id):
        asset = asset_get(
            department=self.department,
            asset_id=asset_id,
            actor=self.api_key,
            purpose="api.text",
            action=self.action_for(request),
        )
        layer = text_layer_look(asset)
        pages = text_pages_json(layer)
        audit_record(
            event_type=EventType.ASSET_VIEW,
            department=asset.department,
            obj=asset,
            details={"view": "api.text", "pages": len(pages) if pages is not None else 0},
        )
        return Response({"id": str(asset.pk), "text_layer": text_layer_status(layer), "pages": pages})
