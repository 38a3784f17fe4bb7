"""``/api/v1/assets``: upload (multipart), list (filter, paginate), detail, download, delete.

Thin views over the assets services and THE access helper ``asset_get`` (foreign ids → 404,
audited). Uploads go through ``assets.uploads.RequestUpload``, the one upload path (shared with
the portal and the chat): no plaintext temp file exists.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from asgiref.sync import sync_to_async
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from accounts.permissions import Action
from assets.content import KINDS
from assets.documents.api import TextLayerStatusSerializer, text_layer_status
from assets.documents.jobs import text_layer_look
from assets.models import Asset
from assets.names import content_disposition, download_name
from assets.reading import asset_plaintext_chunks
from assets.responses import locked_down
from assets.selectors import asset_get, asset_list
from assets.services import asset_delete
from assets.uploads import RequestUpload
from compliance.events import EventType
from compliance.services import audit_record
from departments.api_keys.authentication import ApiKeyView


async def chunks_async(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    """A sync chunk iterator as an async one: under ASGI, Django would otherwise collect a sync
    streaming body in memory before sending it (decryption runs on a worker thread)."""
    iterator = iter(chunks)
    step = sync_to_async(next, thread_sensitive=False)
    while (chunk := await step(iterator, None)) is not None:
        yield chunk


class AssetSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="original_name")
    pages = serializers.IntegerField(source="page_count")
    uploaded_by = serializers.CharField(source="uploaded_by_name")

    class Meta:
        model = Asset
        fields = [
            "id",
            "name",
            "size",
            "content_type",
            "sha256",
            "pages",
            "width",
            "height",
            "classification",
            "uploaded_by",
            "created_at",
        ]
        read_only_fields = fields


class AssetUploadedSerializer(AssetSerializer):
    deduplicated = serializers.BooleanField()

    class Meta(AssetSerializer.Meta):
        fields = [*AssetSerializer.Meta.fields, "deduplicated"]
        read_only_fields = fields


class AssetDetailSerializer(AssetSerializer):
    text_layer = TextLayerStatusSerializer(read_only=True)

    class Meta(AssetSerializer.Meta):
        fields = [*AssetSerializer.Meta.fields, "text_layer"]
        read_only_fields = fields


class AssetUploadSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="An image (JPEG, PNG, BMP, WebP, TIFF, GIF) or a PDF; type decided by content."
    )


class RejectionSerializer(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()


class AssetListPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500


_LIST_FIELDS = (
    "id",
    "original_name",
    "size",
    "content_type",
    "sha256",
    "page_count",
    "width",
    "height",
    "classification",
    "uploaded_by_name",
    "created_at",
)
_DATETIME = serializers.DateTimeField()


def asset_as_dict(asset: Asset) -> dict:
    """What ``AssetSerializer`` gives, built by hand: the list endpoint is the API's hottest path
    and DRF's field machinery costs more than the query (the schema still comes from the serializer)."""
    return {
        "id": str(asset.pk),
        "name": asset.original_name,
        "size": asset.size,
        "content_type": asset.content_type,
        "sha256": asset.sha256,
        "pages": asset.page_count,
        "width": asset.width,
        "height": asset.height,
        "classification": asset.classification,
        "uploaded_by": asset.uploaded_by_name,
        "created_at": _DATETIME.to_representation(asset.created_at),
    }


def _asset_response_data(asset: Asset, *, deduplicated: bool | None = None) -> dict:
    data = asset_as_dict(asset)
    if deduplicated is not None:
        data["deduplicated"] = deduplicated
    return data


class AssetListView(ApiKeyView):
    required_action = {"GET": Action.API_ASSETS_READ, "POST": Action.API_ASSETS_WRITE}
    parser_classes = [MultiPartParser]
    pagination_class = AssetListPagination

    def _filtered(self, request) -> QuerySet[Asset]:
        queryset = asset_list(department=self.department)
        params = request.query_params
        if params.get("content_type"):
            queryset = queryset.filter(content_type=params["content_type"])
        if params.get("name"):
            queryset = queryset.filter(original_name__icontains=params["name"][:255])
        if params.get("sha256"):
            queryset = queryset.filter(sha256=params["sha256"].lower()[:64])
        for param, lookup in (("created_after", "created_at__gte"), ("created_before", "created_at__lt")):
            if params.get(param):
                value = serializers.DateTimeField().to_internal_value(params[param])
                queryset = queryset.filter(**{lookup: value})
        return queryset

    @extend_schema(
        summary="List the department's files",
        parameters=[
            OpenApiParameter("content_type", str, enum=sorted(KINDS)),
            OpenApiParameter("name", str, description="Part of the file name (case-insensitive)."),
            OpenApiParameter("sha256", str, description="Exact SHA-256 of the content."),
            OpenApiParameter("created_after", OpenApiTypes.DATETIME),
            OpenApiParameter("created_before", OpenApiTypes.DATETIME),
        ],
        responses={200: AssetSerializer(many=True)},
    )
    def get(self, request):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(self._filtered(request).only(*_LIST_FIELDS), request, view=self)
        return paginator.get_paginated_response([asset_as_dict(asset) for asset in page])

    @extend_schema(
        summary="Upload a file (multipart/form-data, field 'file')",
        request={"multipart/form-data": AssetUploadSerializer},
        responses={201: AssetUploadedSerializer, 400: RejectionSerializer, 413: RejectionSerializer},
    )
    def post(self, request):
        with RequestUpload(request) as upload:
            result = upload.store(
                department=self.department, uploaded_by=self.api_key.created_by, acting_user=self.api_key, single=True
            )
        refusal = result.rejection if result.rejection is not None else result.files[0].rejection
        if refusal is not None:  # already audited by the upload path
            return Response(refusal.as_dict(), status=refusal.status, headers=refusal.headers)
        (stored,) = result.files
        return Response(
            _asset_response_data(stored.asset, deduplicated=stored.deduplicated), status=status.HTTP_201_CREATED
        )


class AssetDetailView(ApiKeyView):
    required_action = {"GET": Action.API_ASSETS_READ, "DELETE": Action.API_ASSETS_WRITE}

    @extend_schema(summary="A file's metadata and its text layer's status", responses={200: AssetDetailSerializer})
    def get(self, request, asset_id):
        asset = asset_get(
            department=self.department,
            asset_id=asset_id,
            actor=self.api_key,
            purpose="api.view",
            action=self.action_for(request),
        )
        audit_record(event_type=EventType.ASSET_VIEW, department=asset.department, obj=asset, details={"view": "api"})
        data = _asset_response_data(asset)
        data["text_layer"] = text_layer_status(text_layer_look(asset, pages=False))
        return Response(data)

    @extend_schema(summary="Delete a file (crypto-shredding)", responses={204: None})
    def delete(self, request, asset_id):
        asset = asset_get(
            department=self.department,
            asset_id=asset_id,
            actor=self.api_key,
            purpose="api.delete",
            action=self.action_for(request),
        )
        asset_delete(asset=asset, acting_user=self.api_key)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AssetContentView(ApiKeyView):
    required_action = Action.API_ASSETS_READ

    @extend_schema(
        summary="Download a file's content",
        responses={(200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="The file.")},
    )
    def get(self, request, asset_id):
        asset = asset_get(
            department=self.department,
            asset_id=asset_id,
            actor=self.api_key,
            purpose="api.download",
            action=self.action_for(request),
        )
        audit_record(
            event_type=EventType.ASSET_DOWNLOAD,
            department=asset.department,
            obj=asset,
            details={"size": asset.size, "via": "api"},
        )
        response = StreamingHttpResponse(chunks_async(asset_plaintext_chunks(asset)), content_type=asset.content_type)
        response["Content-Length"] = str(asset.size)
        response["Content-Disposition"] = content_disposition(
            download_name(asset.original_name, KINDS[asset.content_type])
        )
        return locked_down(response)
