"""Prometheus metrics: ``GET /metrics``, for operators only: the policy layer's ``Action.METRICS``
(an administration network or the bearer token ``METRICS_TOKEN``; anyone else gets a recorded 404).

Each app process exposes its own figures (scrape every process, e.g. 127.0.0.1:800N); figures
that must agree across processes (audit entries, failed logins) are read from the database at
scrape time. Apps add their own metrics with prometheus_client's default registry.
"""

from __future__ import annotations

import time

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from accounts.permissions import Action, public

REQUEST_LATENCY = Histogram(
    "platform_http_request_duration_seconds",
    "Time to produce an HTTP response, by route.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def route_of(request: HttpRequest) -> str:
    """The URL pattern (not the concrete path) so that label values stay few; Django's handler
    has already resolved it by the time the response comes back."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    return match.route or match.view_name or "unnamed"


class RequestMetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        REQUEST_LATENCY.labels(route_of(request), request.method, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response


class AuditFiguresCollector:
    """Counts read from the audit trail, the same whichever process is scraped."""

    def collect(self):
        from compliance.events import EventType
        from compliance.models import AuditChainHead, AuditEntry

        head = AuditChainHead.objects.filter(pk=1).values_list("sequence", flat=True).first() or 0
        written = CounterMetricFamily("platform_audit_entries_written", "Audit entries written (chain length).")
        written.add_metric([], head)
        yield written
        from compliance.sealing import pending_status

        count, oldest = pending_status()
        pending = GaugeMetricFamily(
            "platform_audit_entries_pending", "Audit entries committed but not chained yet (sealed within ms)."
        )
        pending.add_metric([], count)
        yield pending
        age = GaugeMetricFamily(
            "platform_audit_pending_oldest_seconds", "Age of the oldest audit entry not chained yet (0 if none)."
        )
        age.add_metric([], oldest or 0.0)
        yield age
        failed = CounterMetricFamily("platform_logins_failed", "Failed logins recorded in the audit trail.")
        failed.add_metric([], AuditEntry.objects.filter(event_type=EventType.LOGIN_FAILED).count())
        yield failed


_audit_collector = AuditFiguresCollector()


@public(Action.METRICS)  # refuses (404, recorded) a request that is not an operator's
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    body = generate_latest(REGISTRY)
    for family in _audit_collector.collect():
        body += generate_latest(_SingleFamilyRegistry(family))
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


class _SingleFamilyRegistry:
    """Lets generate_latest print one family computed on demand (not kept in the registry,
    so a scrape that fails to reach the database fails alone instead of breaking registration)."""

    def __init__(self, family):
        self._family = family

    def collect(self):
        yield self._family
