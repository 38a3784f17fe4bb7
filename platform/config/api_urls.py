"""Routes of the REST API: the OpenAI-compatible ``/v1/...`` and the platform's ``/api/v1/...``,
the OpenAPI schema and its interactive docs (drf-spectacular; static files from the sidecar
package, served locally)."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from assets import api as assets_api
from inference import openai_api

openai_urlpatterns = [
    path("models", openai_api.ModelListView.as_view(), name="openai-models"),
    path("models/<str:model_id>", openai_api.ModelDetailView.as_view(), name="openai-model"),
    path("chat/completions", openai_api.ChatCompletionsView.as_view(), name="openai-chat-completions"),
]

platform_urlpatterns = [
    path("assets", assets_api.AssetListView.as_view(), name="api-assets"),
    path("assets/<str:asset_id>", assets_api.AssetDetailView.as_view(), name="api-asset"),
    path("assets/<str:asset_id>/content", assets_api.AssetContentView.as_view(), name="api-asset-content"),
]

schema_urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
