"""The compliance self-check page, for the security and audit administrators.

The page is rendered in the reader's language; ``?format=md|json|html`` downloads an export and
``&lang=zh-hans|en`` chooses its language (the installation's, Chinese by default, otherwise).
Every view and export is recorded in the audit trail with the SHA-256 of what was rendered.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext

from accounts.permissions import Action, requires
from compliance.report import FORMATS, LANGUAGES, STATE_LABELS, compliance_report_export

REPORT_CONTENT_TYPES = {
    "json": "application/json",
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
}
assert set(REPORT_CONTENT_TYPES) == set(FORMATS)  # a format without a content type is a bug


@requires(Action.COMPLIANCE_REPORT_VIEW)
def compliance_report_view(request: HttpRequest) -> HttpResponse:
    fmt = request.GET.get("format", "")
    if fmt in REPORT_CONTENT_TYPES:
        language = request.GET.get("lang") or translation.get_language()
        _, text, digest = compliance_report_export(fmt=fmt, acting_user=request.user, language=language)
        response = HttpResponse(text, content_type=REPORT_CONTENT_TYPES[fmt])
        suffix = "zh" if language.startswith("zh") else "en"
        response["Content-Disposition"] = f'attachment; filename="mlps-self-check-{suffix}.{fmt}"'
        response["X-Report-SHA256"] = digest
        return response
    report, _, digest = compliance_report_export(
        fmt="json", acting_user=request.user, language=translation.get_language()
    )
    # as_dict() renders titles, states and evidence in the active language (the reader's)
    languages = [(code, name) for code, name in settings.LANGUAGES if code in LANGUAGES]
    summary = [(gettext(STATE_LABELS[state]), count) for state, count in report.summary.items()]
    context = {"report": report.as_dict(), "digest": digest, "languages": languages, "summary": summary}
    return render(request, "compliance/report.html", context)
