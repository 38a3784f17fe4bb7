"""Routes of the REST API: the OpenAI-compatible ``/v1/...`` and the platform's ``/api/v1/...``,
the OpenAPI schema and its interactive docs (drf-spectacular; static files from the sidecar
package, served locally)."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts.permissions import Action, public
from assets import api as assets_api
from assets.documents import api as documents_api
from assets.documents import search_api as documents_search_api
from compliance import api as compliance_api
from inference.extraction import api as extraction_api
from inference.openai import views as openai_api

openai_urlpatterns = [
    path("models", openai_api.ModelListView.as_view(), name="openai-models"),
    path("models/<str:model_id>", openai_api.ModelDetailView.as_view(), name="openai-model"),
    path("chat/completions", openai_api.ChatCompletionsView.as_view(), name="openai-chat-completions"),
]

platform_urlpatterns = [
    path("assets", assets_api.AssetListView.as_view(), name="api-assets"),
    path("assets/<str:asset_id>", assets_api.AssetDetailView.as_view(), name="api-asset"),
    path("assets/<str:asset_id>/content", assets_api.AssetContentView.as_view(), name="api-asset-content"),
    path("assets/<str:asset_id>/text", documents_api.AssetTextView.as_view(), name="api-asset-text"),
    path("search", documents_search_api.DocumentSearchView.as_view(), name="api-search"),
    path("templates", extraction_api.TemplateListView.as_view(), name="api-templates"),
    path("templates/<str:slug>", extraction_api.TemplateDetailView.as_view(), name="api-template"),
    path("extractions", extraction_api.ExtractionListView.as_view(), name="api-extractions"),
    path("extractions/<str:extraction_id>", extraction_api.ExtractionDetailView.as_view(), name="api-extraction"),
    path("batches", extraction_api.BatchListView.as_view(), name="api-batches"),
    path("batches/<str:batch_id>", extraction_api.BatchDetailView.as_view(), name="api-batch"),
    path("batches/<str:batch_id>/cancel", extraction_api.BatchCancelView.as_view(), name="api-batch-cancel"),
    path("batches/<str:batch_id>/results", extraction_api.BatchResultsView.as_view(), name="api-batch-results"),
    path("audit/entries", compliance_api.AuditEntryListView.as_view(), name="api-audit-entries"),
    path("audit/export", compliance_api.AuditExportView.as_view(), name="api-audit-export"),
]

schema_urlpatterns = [
    path("schema/", public(Action.API_SCHEMA)(SpectacularAPIView.as_view()), name="api-schema"),
    path("docs/", public(Action.API_SCHEMA)(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
]
