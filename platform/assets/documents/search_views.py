"""The portal's document search: ``/d/<slug>/files/search/?q=`` (assets.documents.search).

The department middleware has answered 404 to non-members and opened the scope; the view asks
``Action.DOCUMENT_SEARCH``. A search that runs is audited (its length and hit counts, never its
text); an empty query shows the form and searches nothing.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from accounts.permissions import Action, requires
from assets.documents.search import MAX_QUERY_CHARS, SearchQueryInvalid, document_search, search_audit_record


@requires(Action.DOCUMENT_SEARCH)
@require_GET
def document_search_page(request: HttpRequest, department_slug: str) -> HttpResponse:
    department = request.department
    query = request.GET.get("q", "")
    results, error = None, ""
    if query.strip():
        try:
            results = document_search(department=department, query=query)
        except SearchQueryInvalid:
            error = _("A search may be at most %(limit)s characters long.") % {"limit": MAX_QUERY_CHARS}
        else:
            search_audit_record(department=department, actor=request.user, results=results, via="portal")
    return render(
        request,
        "assets/search.html",
        {
            "department": department,
            "membership": request.membership,
            "query": query[: MAX_QUERY_CHARS * 2],
            "max_query": MAX_QUERY_CHARS,
            "results": results,
            "error": error,
        },
        status=400 if error else 200,
    )
