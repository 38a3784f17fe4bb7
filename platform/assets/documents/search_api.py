"""``GET /api/v1/search?q=``: the department's documents whose text matches, with page hits and
highlighted snippets (assets.documents.search). Scope ``assets:read``: the API action of reading
the department's files (``Action.API_ASSETS_READ``, the grant ``Action.DOCUMENT_SEARCH`` gives keys;
API routes are bound to their scope's action, like every other file-reading route); audited like
the portal's search (the query's length and hit counts, never its text)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from accounts.permissions import Action
from assets.documents.search import MAX_QUERY_CHARS, SearchQueryInvalid, document_search, search_audit_record
from departments.api_keys.authentication import ApiKeyView

QUERY_REQUIRED = "Give the words to search for in the query parameter q."
MAX_DOCUMENTS = 50

SearchResponseSerializer = inline_serializer(
    "DocumentSearch",
    {
        "documents": serializers.ListField(
            child=serializers.DictField(),
            help_text="Best first: {id, name, score, pages: [{page, score, snippet, snippet_html, highlights}]}; "
            "snippet_html is the snippet HTML-escaped with the matched words in <mark>; highlights are "
            "[start, end) character offsets of the matches in snippet.",
        ),
        "documents_searched": serializers.IntegerField(),
        "documents_left_out": serializers.IntegerField(
            help_text="Documents that do not fit in the index's bounds (the newest are indexed first)."
        ),
    },
)


class DocumentSearchView(ApiKeyView):
    required_action = Action.API_ASSETS_READ

    @extend_schema(
        operation_id="searchDocuments",
        summary="Search the text of the department's documents",
        parameters=[
            OpenApiParameter("q", str, required=True, description=f"The words (at most {MAX_QUERY_CHARS} characters)."),
            OpenApiParameter("limit", int, description=f"Documents to return (1–{MAX_DOCUMENTS}, default 20)."),
        ],
        responses={200: SearchResponseSerializer},
    )
    def get(self, request):
        query = request.query_params.get("q", "")
        if not query.strip():
            raise exceptions.ValidationError({"q": [QUERY_REQUIRED]})
        try:
            limit = min(MAX_DOCUMENTS, max(1, int(request.query_params.get("limit", 20))))
        except ValueError:
            raise exceptions.ValidationError({"limit": ["An integer from 1 to 50."]}) from None
        try:
            results = document_search(department=self.department, query=query, limit=limit)
        except SearchQueryInvalid as invalid:
            raise exceptions.ValidationError({"q": [str(invalid)]}) from None
        search_audit_record(department=self.department, actor=self.api_key, results=results, via="api")
        return Response(
            {
                "documents": [
                    {
                        "id": str(hit.asset.pk),
                        "name": hit.asset.original_name,
                        "score": round(hit.score, 4),
                        "pages": [
                            {
                                "page": page.page,
                                "score": round(page.score, 4),
                                "snippet": page.snippet,
                                "snippet_html": str(page.snippet_html),
                                "highlights": [list(span) for span in page.highlights],
                            }
                            for page in hit.pages
                        ],
                    }
                    for hit in results.documents
                ],
                "documents_searched": results.documents_searched,
                "documents_left_out": results.documents_left_out,
            }
        )
