"""Search in a department's documents (assets.documents.search): the portal page
``/d/<slug>/files/search/?q=`` and ``GET /api/v1/search?q=``, over real text layers (generated
PDFs uploaded, the upload's text-layer job run to its end).

Three personas: a member and the administrator of finance find finance's documents; quality's
member and key never see them; a non-member's portal request is 404. Snippets are escaped, then
highlighted. Every search is audited with its length and hit counts, never its text."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from assets.documents import search
from assets.documents.jobs import text_layer_run
from assets.documents.models import TextLayer, TextLayerStatus
from assets.services import asset_delete, asset_upload
from compliance.events import EventType
from compliance.models import AuditEntry
from departments.tenancy import department_scope
from tests.assets.test_retrieval_pdf import text_pdf

pytestmark = pytest.mark.django_db

FINANCE_MANUAL = [
    "Contents\nPayment, warranty, delivery",
    "Payment terms\nThe buyer pays within 30 days by bank transfer.",
    "Warranty\nThe seller repairs defects free of charge for two years.\nSee <script>alert(1)</script> & co.",
]
QUALITY_MANUAL = ["Warranty\nQuality's own warranty terms: five years."]


@pytest.fixture(autouse=True)
def fresh_index():
    search.search_cache_clear()
    yield
    search.search_cache_clear()


@pytest.fixture
def document(personas, system_context):
    """Upload a generated PDF and make its text layer (the upload's job, run to its end)."""

    def make(pages, name="manual.pdf", department=None, user=None):
        department = department or personas.department_a
        with department_scope(department):
            asset = asset_upload(
                department=department,
                uploaded_by=user or personas.member,
                stream=iter([text_pdf(pages)]),
                original_name=name,
            )
            layer = TextLayer.objects.get(asset=asset)
        text_layer_run(layer.pk)
        layer.refresh_from_db()
        assert layer.status == TextLayerStatus.DONE, (layer.failure, layer.failure_params)
        return asset

    return make


def search_page(client, slug, query):
    return client.get(f"/d/{slug}/files/search/", {"q": query})


def search_entries() -> list[AuditEntry]:
    entries = AuditEntry.objects.filter(event_type=EventType.ASSET_VIEW).order_by("sequence")
    return [entry for entry in entries if entry.details.get("view") == "search"]


@pytest.mark.parametrize("who", ["admin", "member"])
def test_members_find_their_departments_pages_highlighted_and_audited(client, personas, document, who):
    finance = document(FINANCE_MANUAL)
    document(QUALITY_MANUAL, "quality.pdf", personas.department_b, personas.outsider)
    client.force_login(getattr(personas, who))
    response = search_page(client, "finance", "Does the WARRANTY cover defects?")
    assert response.status_code == 200
    results = response.context["results"]
    assert [hit.asset.pk for hit in results.documents] == [finance.pk]
    pages = [page.page for page in results.documents[0].pages]
    assert pages[0] == 3 and 2 not in pages  # page 1 lists the word too, ranked after page 3
    html = response.content.decode()
    assert "<mark>Warranty</mark>" in html and "quality.pdf" not in html
    # The page's text is escaped before the matches are marked.
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co." in html and "<script>alert(1)" not in html
    assert f"/d/finance/files/{finance.pk}/thumbnail/?page=3&amp;size=large" in html

    (entry,) = search_entries()
    assert entry.details["query_length"] == len("Does the WARRANTY cover defects?")
    assert (entry.details["documents"], entry.details["hits"], entry.details["via"]) == (1, len(pages), "portal")
    assert entry.actor_name == getattr(personas, who).username and entry.department_slug == "finance"
    assert "WARRANTY" not in json.dumps(entry.details) and "warranty" not in json.dumps(entry.details).lower()


def test_another_department_never_sees_them_and_a_non_member_gets_404(client, personas, document):
    document(FINANCE_MANUAL)
    client.force_login(personas.outsider)
    assert search_page(client, "finance", "warranty").status_code == 404
    own = search_page(client, "quality", "warranty")
    assert own.status_code == 200 and own.context["results"].documents == []
    assert "manual.pdf" not in own.content.decode()


def test_a_deleted_document_is_never_found(client, personas, document):
    finance = document(FINANCE_MANUAL)
    client.force_login(personas.member)
    assert search_page(client, "finance", "warranty").context["results"].documents
    asset_delete(asset=finance, acting_user=personas.admin)
    assert search_page(client, "finance", "warranty").context["results"].documents == []


def test_empty_and_too_long_queries(client, personas, document):
    document(FINANCE_MANUAL)
    client.force_login(personas.member)
    empty = search_page(client, "finance", "  ")
    assert empty.status_code == 200 and empty.context["results"] is None
    long = search_page(client, "finance", "warranty " * 30)
    assert long.status_code == 400 and "200" in long.content.decode()
    assert search_entries() == []  # nothing was searched


def test_the_index_keeps_the_newest_documents_within_its_page_bound(client, personas, document, settings):
    document(["Warranty of the old machine"], "old.pdf")
    newest = document(["Warranty of the new machine", "second page"], "new.pdf")
    settings.DOCUMENT_SEARCH_MAX_PAGES = 2
    client.force_login(personas.member)
    results = search_page(client, "finance", "warranty").context["results"]
    assert [hit.asset.pk for hit in results.documents] == [newest.pk] and results.documents_left_out == 1


def test_the_department_navigation_lists_the_search(client, personas):
    client.force_login(personas.member)
    page = client.get("/d/finance/files/").content.decode()
    assert 'href="/d/finance/files/search/"' in page


# --- the API --------------------------------------------------------------------------------------


def api(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@pytest.fixture
def keys(personas, system_context):
    from datetime import timedelta

    from django.utils import timezone

    from departments.api_keys.services import api_key_create

    def make(department, scopes, user):
        return api_key_create(
            department=department,
            name="ERP",
            scopes=scopes,
            created_by=user,
            expires_at=timezone.now() + timedelta(days=1),
        ).raw_key

    return {
        "finance": make(personas.department_a, ["assets:read"], personas.admin),
        "finance-chat-only": make(personas.department_a, ["chat"], personas.admin),
        "quality": make(personas.department_b, ["assets:read"], personas.outsider),
    }


def test_the_api_finds_pages_with_snippets_scoped_to_the_key(personas, document, keys, settings):
    settings.API_KEY_RATE_PER_MINUTE = 1000
    finance = document(FINANCE_MANUAL)
    response = api(keys["finance"]).get("/api/v1/search", {"q": "bank transfer payment"})
    assert response.status_code == 200, response.content
    body = response.json()
    (hit,) = body["documents"]
    assert hit["id"] == str(finance.pk) and hit["name"] == "manual.pdf"
    first = hit["pages"][0]
    assert first["page"] == 2
    marked = [first["snippet"][start:end] for start, end in first["highlights"]]
    assert {word.lower() for word in marked} >= {"payment", "bank", "transfer"}
    assert "<mark>bank</mark>" in first["snippet_html"]
    (entry,) = search_entries()
    assert entry.actor_type == "api_key" and entry.details["via"] == "api"
    assert entry.details["query_length"] == len("bank transfer payment")
    assert "bank" not in json.dumps(entry.details)

    other = api(keys["quality"]).get("/api/v1/search", {"q": "bank transfer payment"})
    assert other.status_code == 200 and other.json()["documents"] == []
    assert api(keys["finance-chat-only"]).get("/api/v1/search", {"q": "bank"}).status_code == 403
    assert api(keys["finance"]).get("/api/v1/search").status_code == 400
    assert api(keys["finance"]).get("/api/v1/search", {"q": "x" * 201}).status_code == 400
    assert APIClient().get("/api/v1/search", {"q": "bank"}).status_code in (401, 403)


# --- snippets -------------------------------------------------------------------------------------


def test_snippets_are_escaped_then_marked_and_chinese_is_highlighted_as_segmented():
    pattern = search._term_pattern("增值税发票的金额")
    snippet, spans = search.snippet_cut("购买方：<b>上海</b>。增值税专用发票，金额 1,234.56 元", pattern)
    hit = search.PageHit(page=1, score=1.0, snippet=snippet, highlights=spans)
    html = str(hit.snippet_html)
    assert "&lt;b&gt;上海&lt;/b&gt;" in html
    assert "<mark>增值税</mark>" in html and "<mark>发票</mark>" in html and "<mark>金额</mark>" in html


def test_a_long_page_gives_a_window_around_its_matches():
    text = "filler " * 100 + "the warranty lasts two years " + "filler " * 100
    snippet, spans = search.snippet_cut(text, search._term_pattern("warranty"))
    assert len(snippet) <= search.SNIPPET_CHARS + 2 and snippet.startswith("…") and snippet.endswith("…")
    assert [snippet[start:end] for start, end in spans] == ["warranty"]


def test_a_chinese_scan_is_found_by_its_segmented_words(client, personas, system_context):
    """An image read by OCR (PP-OCRv4): "发票金额" is on no line as such; segmented, its words are."""
    import io
    from pathlib import Path

    from PIL import Image, ImageDraw, ImageFont

    from tests.conftest import requirement_missing

    font_path = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
    if not font_path.exists():
        requirement_missing(f"{font_path} is missing (install fonts-wqy-zenhei)")
    image = Image.new("RGB", (900, 260), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(font_path), 40)
    draw.text((40, 40), "增值税专用发票 No.12345678", font=font, fill="black")
    draw.text((40, 140), "合计金额：1,234.56元", font=font, fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    with department_scope(personas.department_a):
        scan = asset_upload(
            department=personas.department_a,
            uploaded_by=personas.member,
            stream=iter([buffer.getvalue()]),
            original_name="scan.png",
        )
        layer = TextLayer.objects.get(asset=scan)
    text_layer_run(layer.pk)
    client.force_login(personas.member)
    response = search_page(client, "finance", "发票金额")
    (hit,) = response.context["results"].documents
    assert hit.asset.pk == scan.pk
    html = response.content.decode()
    assert "<mark>发票</mark>" in html and "<mark>金额</mark>" in html
