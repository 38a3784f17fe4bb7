"""``/api/v1/audit/...``: the trail for the audit administrator's API keys (scope ``audit:read``).

Only keys owned by the audit administrator carry that scope (``departments.api_keys.models``), and like
the console they work only from ``ADMIN_ALLOWED_NETWORKS`` (elsewhere: 404, audited). Queries
take the console's filters; the export streams the same lines as ``audit_export`` (JSON lines or
CSV with the same columns), page by page, so memory stays flat however long the trail is.
Every query and export is itself audited.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from accounts.permissions import Action
from compliance.chain import canonical_json
from compliance.events import EventType, Outcome
from compliance.export import (
    CSV_COLUMNS,
    FORMATS,
    UNKNOWN_FORMAT,
    csv_cells_neutralise,
    export_queryset,
    export_values,
)
from compliance.forms import AuditFilterForm
from compliance.models import AuditEntry
from compliance.selectors import audit_entry_list
from compliance.services import audit_record
from departments.api_keys.authentication import ApiKeyView
from departments.models import Department

EXPORT_PAGE = 2000
FILTERS_INVALID = "Invalid filters: {errors}"

_FILTER_PARAMETERS = [
    OpenApiParameter("since", OpenApiTypes.DATETIME),
    OpenApiParameter("until", OpenApiTypes.DATETIME),
    OpenApiParameter("user", str, description="Actor name (a user name or key:<prefix> (creator))."),
    OpenApiParameter("department", str, description="Department slug."),
    OpenApiParameter("event_type", str, enum=EventType.values),
    OpenApiParameter("outcome", str, enum=Outcome.values),
    OpenApiParameter("object", str, description="Object type, id, or part of its description."),
    OpenApiParameter("request_id", str),
]


class AuditEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = list(CSV_COLUMNS)
        read_only_fields = fields


class AuditPagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


class AuditView(ApiKeyView):
    required_action = Action.API_AUDIT_READ

    def filters(self) -> dict[str, Any]:
        form = AuditFilterForm(self.request.query_params)
        if not form.is_valid():
            raise exceptions.ValidationError(FILTERS_INVALID.format(errors=form.errors.as_text()))
        return form.active_filters()


def _plain(filters: dict[str, Any]) -> dict[str, Any]:
    return {name: value.isoformat() if hasattr(value, "isoformat") else value for name, value in filters.items()}


class AuditEntryListView(AuditView):
    pagination_class = AuditPagination

    @extend_schema(
        operation_id="listAuditEntries",
        summary="Query the audit trail (newest first)",
        parameters=_FILTER_PARAMETERS,
        responses=AuditEntrySerializer(many=True),
    )
    def get(self, request):
        filters = self.filters()
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(audit_entry_list(filters=filters), request, view=self)
        audit_record(
            event_type=EventType.AUDIT_VIEW,
            object_type="compliance.auditentry",
            object_repr="audit trail query (API)",
            details={"filters": _plain(filters), "offset": paginator.offset, "limit": paginator.limit, "via": "api"},
        )
        return paginator.get_paginated_response(AuditEntrySerializer(page, many=True).data)


def _export_line(values: tuple, format: str) -> str:
    row = export_values(values)
    if format == "csv":
        row[CSV_COLUMNS.index("details")] = canonical_json(row[CSV_COLUMNS.index("details")])
        buffer = io.StringIO()
        csv.writer(buffer).writerow(csv_cells_neutralise(row))
        return buffer.getvalue()
    return json.dumps(dict(zip(CSV_COLUMNS, row, strict=True)), ensure_ascii=False) + "\n"


def _export_page(queryset, after: int, format: str) -> tuple[bytes, int | None]:
    rows = list(queryset.filter(sequence__gt=after).values_list(*CSV_COLUMNS)[:EXPORT_PAGE])
    if not rows:
        return b"", None
    return "".join(_export_line(row, format) for row in rows).encode("utf-8"), rows[-1][0]


async def _export_stream(queryset, format: str) -> AsyncIterator[bytes]:
    if format == "csv":
        buffer = io.StringIO()
        csv.writer(buffer).writerow(CSV_COLUMNS)
        yield buffer.getvalue().encode("utf-8")
    after = 0
    fetch = sync_to_async(_export_page)
    while True:
        data, last = await fetch(queryset, after, format)
        if last is None:
            return
        yield data
        after = last


class _FormatIsOurs(DefaultContentNegotiation):
    """``?format=jsonl|csv`` names the export format (as in the console), not a DRF renderer."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class AuditExportView(AuditView):
    content_negotiation_class = _FormatIsOurs

    @extend_schema(
        operation_id="exportAuditEntries",
        summary="Stream the trail in the export format of audit_export (JSON lines or CSV), oldest first",
        parameters=[
            OpenApiParameter("format", str, enum=list(FORMATS), default="jsonl"),
            OpenApiParameter("since", OpenApiTypes.DATETIME),
            OpenApiParameter("until", OpenApiTypes.DATETIME),
            OpenApiParameter("department", str),
        ],
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.BINARY),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY),
        },
    )
    def get(self, request):
        format = request.query_params.get("format", "jsonl")
        if format not in FORMATS:
            raise exceptions.ValidationError({"format": [UNKNOWN_FORMAT]})
        filters = self.filters()
        department = None
        if filters.get("department"):
            department = Department.objects.filter(slug=filters["department"]).first()
            if department is None:
                raise exceptions.ValidationError({"department": ["No such department."]})
        queryset = export_queryset(since=filters.get("since"), until=filters.get("until"), department=department)
        audit_record(
            event_type=EventType.AUDIT_EXPORT,
            object_type="compliance.auditentry",
            object_repr="audit trail export (API)",
            details={"format": format, "filters": _plain(filters), "via": "api", "streamed": True},
        )
        response = StreamingHttpResponse(
            _export_stream(queryset, format),
            content_type="application/x-ndjson" if format == "jsonl" else "text/csv; charset=utf-8",
        )
        stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{format}"'
        response["Cache-Control"] = "private, no-store"
        return response


__all__ = ["AuditEntryListView", "AuditExportView", "Response"]
