"""The compliance self-check page, for the security and audit administrators."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.permissions import Action, requires
from compliance.report import compliance_report_export

REPORT_CONTENT_TYPES = {
    "json": "application/json",
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
}


@requires(Action.COMPLIANCE_REPORT_VIEW)
def compliance_report_view(request: HttpRequest) -> HttpResponse:
    fmt = request.GET.get("format", "")
    if fmt in REPORT_CONTENT_TYPES:
        _, text, digest = compliance_report_export(fmt=fmt, acting_user=request.user)
        response = HttpResponse(text, content_type=REPORT_CONTENT_TYPES[fmt])
        response["Content-Disposition"] = f'attachment; filename="mlps-self-check.{fmt}"'
        response["X-Report-SHA256"] = digest
        return response
    report, _, digest = compliance_report_export(fmt="json", acting_user=request.user)
    return render(request, "compliance/report.html", {"report": report, "digest": digest})
