from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from django.views.i18n import set_language

from accounts.permissions import Action, public
from compliance.report_views import compliance_report_view
from config import api_urls, health, metrics
from inference.usage import urls as usage_urls

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("i18n/setlang/", public(Action.LANGUAGE)(set_language), name="set_language"),
    path("accounts/", include("accounts.urls")),  # login, logout, two-factor, API login
    path("admin/", admin.site.urls),
    path("compliance/report/", compliance_report_view, name="compliance-report"),
    path("audit/", include("compliance.urls")),  # the auditor console (audit administrator only)
    path("v1/", include(api_urls.openai_urlpatterns)),  # OpenAI-compatible
    path("api/v1/", include(api_urls.platform_urlpatterns)),
    path("api/", include(api_urls.schema_urlpatterns)),
    path("d/<slug:department_slug>/files/", include("assets.urls")),
    # The department administrator's choice of approved models (inference/registry).
    path("d/<slug:department_slug>/models/", include("inference.registry.urls")),
    path("d/<slug:department_slug>/extract/", include("inference.extraction.urls")),  # extraction and batches
    # Usage (requests and tokens, counts only): the department administrator's, the system administrator's.
    path("d/<slug:department_slug>/usage/", include(usage_urls.department_urlpatterns)),
    path("usage/", include("inference.usage.urls")),
    # The chat is the department home page (/d/<slug>/) and its pages; before departments.urls.
    path("d/<slug:department_slug>/", include("inference.chat.urls")),
    path("d/", include("departments.urls")),
    path("", public(Action.ENTRY)(RedirectView.as_view(pattern_name="departments:picker", permanent=False))),
]

# Styled error pages in the reader's language (config/error_pages.py); a CSRF failure renders
# templates/403_csrf.html through Django's own view.
handler400 = "config.error_pages.bad_request"
handler403 = "config.error_pages.permission_denied"
handler404 = "config.error_pages.page_not_found"
handler500 = "config.error_pages.server_error"
