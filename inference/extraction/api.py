"""``/api/v1/templates``, ``/api/v1/extractions`` and ``/api/v1/batches`` (scope ``extract``).

Templates are defined by the department's administrator in the portal; the API reads them.
An extraction runs synchronously and answers the stored result; a batch answers 202 at once and
is followed with its progress, cancelled, and its results downloaded as JSON lines.
"""

from __future__ import annotations

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from accounts.permissions import Action
from assets.content import DecodeBusy
from assets.reading import AssetUnreadable
from assets.selectors import asset_get
from compliance.context import current_request_context
from config.strict_json import StrictJSONParser
from departments.api_keys.authentication import ApiKeyView, scoped_object_get
from inference.engine.errors import EngineBusy, InferenceError, InvalidRequest, ModelUnavailable
from inference.engine.structured import SchemaInvalid
from inference.extraction.batch_jobs import batch_cancel, batch_create, batch_results_jsonl, batch_start_after_commit
from inference.extraction.models import BatchJob, Extraction
from inference.extraction.services import extraction_run, templates_builtin_ensure
from inference.image_budget import ImageBudgetExceeded
from inference.models import TaskTemplate
from inference.registry.services import ModelNotEnabled, ModelNotFound, VersionNotApproved, model_engine_for

TEMPLATE_UNKNOWN = "No active extraction template '{slug}' in this department."


class TemplateSerializer(serializers.ModelSerializer):
    class Meta:
        model = TaskTemplate
        fields = ["slug", "name", "instruction", "json_schema", "rules", "is_builtin", "updated_at"]
        read_only_fields = fields


class ExtractionSerializer(serializers.ModelSerializer):
    template = serializers.CharField(source="template_slug")
    asset = serializers.CharField(source="asset_ref")
    batch = serializers.UUIDField(source="batch_id", allow_null=True)
    # Sealed at rest (assets.text_crypto); JSON values to the client, as before.
    result = serializers.JSONField(allow_null=True, read_only=True)
    flags = serializers.JSONField(read_only=True)
    rule_outcomes = serializers.JSONField(read_only=True)
    problems = serializers.JSONField(read_only=True)
    # Kept in ``usage`` (no migration), answered beside it: the pages the model was shown, and
    # where each value was found ({"page", "box", "source", "width", "height"} or {"ungrounded": true}).
    usage = serializers.SerializerMethodField()
    pages = serializers.SerializerMethodField()
    grounding = serializers.SerializerMethodField()

    class Meta:
        model = Extraction
        fields = [
            "id",
            "template",
            "asset",
            "asset_sha256",
            "batch",
            "status",
            "result",
            "flags",
            "rule_outcomes",
            "problems",
            "attempts",
            "usage",
            "pages",
            "grounding",
            "created_by_name",
            "created_at",
        ]
        read_only_fields = fields

    def get_usage(self, extraction) -> dict:
        return {key: value for key, value in (extraction.usage or {}).items() if key not in ("pages", "grounding")}

    def get_pages(self, extraction) -> list[int] | None:
        return (extraction.usage or {}).get("pages")

    def get_grounding(self, extraction) -> dict | None:
        return (extraction.usage or {}).get("grounding")


class ExtractionCreateSerializer(serializers.Serializer):
    asset = serializers.UUIDField(help_text="The file's id (from /api/v1/assets).")
    template = serializers.SlugField(help_text="The template's identifier, e.g. vat-invoice.")
    model = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=100,
        help_text="A loaded model the department may use (GET /v1/models); default: the department's default.",
    )


class BatchSerializer(serializers.ModelSerializer):
    template = serializers.CharField(source="template_slug")
    model = serializers.CharField(
        source="model_name", help_text="The model the batch named; empty: the department's default."
    )

    class Meta:
        model = BatchJob
        fields = [
            "id",
            "template",
            "model",
            "status",
            "total",
            "processed",
            "succeeded",
            "failed",
            "cancel_requested",
            "error",
            "created_by_name",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class BatchCreateSerializer(serializers.Serializer):
    assets = serializers.ListField(child=serializers.UUIDField(), min_length=1, max_length=1000)
    template = serializers.SlugField()
    model = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=100,
        help_text="A loaded model the department may use (GET /v1/models), for every file; default: the "
        "department's default.",
    )


class ErrorDetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


# 400: {"detail": "..."} or, for invalid fields, {"<field>": ["message", ...], ...}
VALIDATION_ERROR = OpenApiResponse(
    OpenApiTypes.OBJECT, description='{"detail": "…"} or {"<field>": ["message", …]} for invalid fields'
)


class ExtractPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500


class ExtractView(ApiKeyView):
    required_action = Action.API_EXTRACT
    parser_classes = [StrictJSONParser]

    def handle_exception(self, exc):
        # The engine's refusals, with the statuses the rest of the API uses.
        if isinstance(exc, EngineBusy):
            return Response({"detail": str(exc)}, status=429, headers={"Retry-After": str(exc.retry_after)})
        # The model the request names (each refusal recorded by the registry).
        if isinstance(exc, ModelNotFound):
            return Response({"detail": str(exc), "code": "model_not_found"}, status=404)
        if isinstance(exc, VersionNotApproved):
            return Response({"detail": str(exc), "code": "model_not_approved"}, status=403)
        if isinstance(exc, ModelNotEnabled):
            return Response({"detail": str(exc), "code": "model_not_enabled"}, status=403)
        if isinstance(exc, ModelUnavailable):
            return Response({"detail": str(exc)}, status=503, headers={"Retry-After": "5"})
        if isinstance(exc, InvalidRequest | SchemaInvalid):
            return Response({"detail": str(exc)}, status=400)
        # The file's decoding: over the image budget, damaged (now marked unusable), or no
        # decode slot free in time.
        if isinstance(exc, ImageBudgetExceeded | AssetUnreadable):
            status_code = exc.status if isinstance(exc, ImageBudgetExceeded) else 400
            return Response({"detail": str(exc), "code": exc.code}, status=status_code)
        if isinstance(exc, DecodeBusy):
            return Response({"detail": str(exc)}, status=429, headers={"Retry-After": str(exc.retry_after)})
        return super().handle_exception(exc)

    def template_get(self, slug: str) -> TaskTemplate:
        templates_builtin_ensure(department=self.department)
        template = TaskTemplate.objects.filter(department=self.department, slug=slug, is_active=True).first()
        if template is None:
            raise exceptions.ValidationError({"template": [TEMPLATE_UNKNOWN.format(slug=slug)]})
        return template

    def paginated(self, queryset, serializer_class):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)


class TemplateListView(ExtractView):
    pagination_class = ExtractPagination

    @extend_schema(
        operation_id="listTemplates", summary="Extraction templates", responses=TemplateSerializer(many=True)
    )
    def get(self, request):
        templates_builtin_ensure(department=self.department)
        queryset = TaskTemplate.objects.filter(
            department=self.department, is_active=True, json_schema__isnull=False
        ).order_by("slug")
        return self.paginated(queryset, TemplateSerializer)


class TemplateDetailView(ExtractView):
    @extend_schema(operation_id="retrieveTemplate", summary="One extraction template", responses=TemplateSerializer)
    def get(self, request, slug: str):
        templates_builtin_ensure(department=self.department)
        template = scoped_object_get(TaskTemplate, view=self, lookup={"slug": slug}, purpose="api.template")
        return Response(TemplateSerializer(template).data)


class ExtractionListView(ExtractView):
    pagination_class = ExtractPagination

    @extend_schema(
        operation_id="listExtractions",
        summary="Stored extraction results",
        parameters=[
            OpenApiParameter("status", str, enum=["valid", "invalid", "failed"]),
            OpenApiParameter("template", str),
            OpenApiParameter("batch", OpenApiTypes.UUID),
        ],
        responses=ExtractionSerializer(many=True),
    )
    def get(self, request):
        queryset = Extraction.objects.filter(department=self.department).order_by("-created_at")
        params = request.query_params
        if params.get("status"):
            queryset = queryset.filter(status=params["status"])
        if params.get("template"):
            queryset = queryset.filter(template_slug=params["template"])
        if params.get("batch"):
            batch = serializers.UUIDField().to_internal_value(params["batch"])
            queryset = queryset.filter(batch_id=batch)
        return self.paginated(queryset, ExtractionSerializer)

    @extend_schema(
        operation_id="createExtraction",
        summary="Extract structured fields from a file with a template (synchronous)",
        request=ExtractionCreateSerializer,
        responses={
            201: ExtractionSerializer,
            400: VALIDATION_ERROR,
            404: ErrorDetailSerializer,
            429: ErrorDetailSerializer,
            503: ErrorDetailSerializer,
        },
    )
    def post(self, request):
        payload = ExtractionCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        template = self.template_get(payload.validated_data["template"])
        # The model it names, or the department's default: only a loaded one the department's
        # administrator enabled (refused and recorded otherwise), before the file is read.
        engine = model_engine_for(
            subject=self.api_key,
            department=self.department,
            requested=payload.validated_data.get("model") or None,
            action=Action.API_EXTRACT,
            path=request.path,
            method=request.method,
        )
        asset = asset_get(
            department=self.department,
            asset_id=payload.validated_data["asset"],
            actor=self.api_key,
            purpose="extraction",
        )
        extraction = extraction_run(
            department=self.department,
            template=template,
            asset=asset,
            engine=engine,
            api_key=self.api_key,
            request_id=getattr(request._request, "request_id", None),
        )
        return Response(ExtractionSerializer(extraction).data, status=status.HTTP_201_CREATED)


class ExtractionDetailView(ExtractView):
    @extend_schema(operation_id="retrieveExtraction", summary="One extraction result", responses=ExtractionSerializer)
    def get(self, request, extraction_id: str):
        extraction = scoped_object_get(Extraction, view=self, lookup={"pk": extraction_id}, purpose="api.extraction")
        return Response(ExtractionSerializer(extraction).data)


class BatchListView(ExtractView):
    pagination_class = ExtractPagination

    @extend_schema(operation_id="listBatches", summary="Batch jobs", responses=BatchSerializer(many=True))
    def get(self, request):
        return self.paginated(BatchJob.objects.filter(department=self.department), BatchSerializer)

    @extend_schema(
        operation_id="createBatch",
        summary="Start a batch job: many files × one template",
        request=BatchCreateSerializer,
        responses={202: BatchSerializer, 400: VALIDATION_ERROR, 403: ErrorDetailSerializer, 404: ErrorDetailSerializer},
    )
    def post(self, request):
        payload = BatchCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        template = self.template_get(payload.validated_data["template"])
        job = batch_create(
            department=self.department,
            template=template,
            asset_ids=[str(value) for value in payload.validated_data["assets"]],
            api_key=self.api_key,
            model=payload.validated_data.get("model") or "",
            where={"path": request.path, "method": request.method},
        )
        batch_start_after_commit(job, context=current_request_context())
        return Response(BatchSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class BatchDetailView(ExtractView):
    @extend_schema(operation_id="retrieveBatch", summary="A batch job's progress", responses=BatchSerializer)
    def get(self, request, batch_id: str):
        job = scoped_object_get(BatchJob, view=self, lookup={"pk": batch_id}, purpose="api.batch")
        return Response(BatchSerializer(job).data)


class BatchCancelView(ExtractView):
    @extend_schema(operation_id="cancelBatch", summary="Cancel a batch job", request=None, responses=BatchSerializer)
    def post(self, request, batch_id: str):
        job = scoped_object_get(BatchJob, view=self, lookup={"pk": batch_id}, purpose="api.batch_cancel")
        job = batch_cancel(job=job, acting_user=self.api_key)
        return Response(BatchSerializer(job).data)


class BatchResultsView(ExtractView):
    @extend_schema(
        operation_id="downloadBatchResults",
        summary="A batch job's results as JSON lines (one extraction per line)",
        responses={(200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.BINARY)},
    )
    def get(self, request, batch_id: str):
        job = scoped_object_get(BatchJob, view=self, lookup={"pk": batch_id}, purpose="api.batch_results")
        response = StreamingHttpResponse(list(batch_results_jsonl(job)), content_type="application/x-ndjson")
        response["Content-Disposition"] = f'attachment; filename="batch-{job.pk}.jsonl"'
        response["Cache-Control"] = "private, no-store"
        return response


__all__ = ["InferenceError"]
