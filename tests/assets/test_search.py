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
    assert search_page(client, "finance", "seller").context["results"].documents
    assert search.index_builds() == 1  # the same documents: the same index
    asset_delete(asset=finance, acting_user=personas.admin)
    assert search_page(client, "finance", "warranty").context["results"].documents == []
    assert search.index_builds() == 2  # the deletion made the next search rebuild it


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


# --- bounds (security review): snippet work, indexed text, the caches ------------------------------


class _Position(int):
    """A match position that counts the comparisons made with it."""

    compared = 0

    def _count(self, other, method):
        _Position.compared += 1
        return getattr(int, method)(self, other)

    def __lt__(self, other):
        return self._count(other, "__lt__")

    def __le__(self, other):
        return self._count(other, "__le__")

    def __gt__(self, other):
        return self._count(other, "__gt__")

    def __ge__(self, other):
        return self._count(other, "__ge__")

    __hash__ = int.__hash__


class _Match:
    def __init__(self, match):
        self._start, self._end = _Position(match.start()), _Position(match.end())

    def start(self):
        return self._start

    def end(self):
        return self._end


class _CountingPattern:
    """The real pattern, its matches handed out one by one and counted; more than ``most`` fails."""

    def __init__(self, pattern, most=None):
        self.pattern, self.most, self.pulled = pattern, most, 0

    def finditer(self, text):
        for match in self.pattern.finditer(text):
            self.pulled += 1
            assert self.most is None or self.pulled <= self.most, f"more than {self.most} matches were read"
            yield _Match(match)


def _snippet_reference(text, pattern):
    """snippet_cut as it was: every window counted from scratch (quadratic; small inputs only)."""
    import unicodedata

    text = " ".join(unicodedata.normalize("NFKC", text).split())
    matches = [(match.start(), match.end()) for match in pattern.finditer(text)] if pattern else []
    if not matches:
        return text[: search.SNIPPET_CHARS], ()
    best_start, best_count = matches[0][0], 0
    for start, _end in matches:
        count = sum(1 for other, end in matches if start <= other and end <= start + search.SNIPPET_CHARS)
        if count > best_count:
            best_start, best_count = start, count
    begin = max(0, best_start - search.SNIPPET_CHARS // 4)
    end = min(len(text), begin + search.SNIPPET_CHARS)
    begin = max(0, min(begin, end - search.SNIPPET_CHARS))
    spans = tuple((start - begin, stop - begin) for start, stop in matches if begin <= start and stop <= end)
    prefix, suffix = ("…" if begin > 0 else ""), ("…" if end < len(text) else "")
    return prefix + text[begin:end] + suffix, tuple((a + len(prefix), b + len(prefix)) for a, b in spans)


def test_a_page_of_one_repeated_word_reads_at_most_500_of_its_matches():
    """One line of 40,000 copies of "aa" took ~44 s per search (every match counted all others)."""
    text = "aa " * 40_000
    pattern = _CountingPattern(search._term_pattern("aa"), most=500)
    snippet, spans = search.snippet_cut(text, pattern)
    assert 0 < pattern.pulled <= 500 and search.SNIPPET_MAX_MATCHES <= 500
    assert len(snippet) <= search.SNIPPET_CHARS + 2 and snippet.startswith("aa")
    assert spans and all(snippet[start:end] == "aa" for start, end in spans)


def test_the_densest_window_is_found_with_a_bounded_number_of_comparisons_per_match():
    """Work counted, not timed: each match position is compared a constant number of times."""
    matches = 400  # under the cap, so the cap does not hide quadratic work
    text = "aa " * matches
    _Position.compared = 0
    pattern = _CountingPattern(search._term_pattern("aa"))
    search.snippet_cut(text, pattern)
    assert pattern.pulled == matches
    assert _Position.compared <= 8 * matches, _Position.compared  # quadratic: 2 × 400² = 320,000


def test_snippets_are_the_same_as_counting_every_window():
    import random

    generator = random.Random(20)
    words = ["warranty", "payment", "bank", "the", "of", "filler", "terms", "增值税", "发票", "a" * 200]
    for _round in range(300):
        text = " ".join(generator.choice(words) for _word in range(generator.randint(0, 120)))
        query = " ".join(generator.sample(["warranty", "payments", "bank", "增值税发票", "aaaa"], 2))
        pattern = search._term_pattern(query)
        assert search.snippet_cut(text, pattern) == _snippet_reference(text, pattern), (text, query)


def test_only_the_first_characters_of_a_page_are_indexed(client, personas, document, settings):
    settings.DOCUMENT_SEARCH_PAGE_CHARS = 60
    manual = document(["Warranty terms of the machine, valid for two years from delivery. Zebra"])
    client.force_login(personas.member)
    assert search_page(client, "finance", "zebra").context["results"].documents == []  # past the cap
    (hit,) = search_page(client, "finance", "warranty").context["results"].documents  # the page still is
    assert hit.asset.pk == manual.pk and "Zebra" not in hit.pages[0].snippet


def test_an_index_holds_at_most_its_token_bound_newest_documents_first(client, personas, document, settings):
    from assets.documents.retrieval import tokenize

    document(["Warranty of the old machine lasts two years"], "old.pdf")
    newest = document(["Warranty of the new machine"], "new.pdf")
    settings.DOCUMENT_SEARCH_MAX_TOKENS = len(tokenize("Warranty of the new machine")) + 1
    client.force_login(personas.member)
    results = search_page(client, "finance", "warranty").context["results"]
    assert [hit.asset.pk for hit in results.documents] == [newest.pk]
    assert (results.documents_searched, results.documents_left_out) == (1, 1)
    settings.DOCUMENT_SEARCH_MAX_TOKENS = 2  # not even the newest fits: nothing is indexed, all said
    results = search_page(client, "finance", "warranty").context["results"]
    assert results.documents == [] and (results.documents_searched, results.documents_left_out) == (0, 2)


def test_a_document_too_big_for_the_index_is_skipped_and_older_ones_still_searched(
    client, personas, document, settings
):
    from assets.documents.retrieval import tokenize

    old = document(["Warranty of the old machine"], "old.pdf")
    document(["Warranty of the huge machine, " + "spare part list " * 50], "huge.pdf")
    settings.DOCUMENT_SEARCH_MAX_TOKENS = len(tokenize("Warranty of the old machine")) + 1
    client.force_login(personas.member)
    results = search_page(client, "finance", "warranty").context["results"]
    assert [hit.asset.pk for hit in results.documents] == [old.pk]
    assert (results.documents_searched, results.documents_left_out) == (1, 1)


def test_a_document_beyond_the_page_bound_is_skipped_and_older_ones_still_searched(
    client, personas, document, settings
):
    old = document(["Warranty of the old machine"], "old.pdf")
    document(["Warranty, page one", "Warranty, page two", "Warranty, page three"], "long.pdf")
    settings.DOCUMENT_SEARCH_MAX_PAGES = 2
    client.force_login(personas.member)
    page = search_page(client, "finance", "warranty")
    results = page.context["results"]
    assert [hit.asset.pk for hit in results.documents] == [old.pk]
    assert results.documents_left_out == 1
    for language, said in (
        ("en", "1 documents were not searched (they do not fit in the search index)"),
        ("zh-hans", "有 1 个文档未被搜索（搜索索引容纳不下）"),
    ):
        shown = client.get("/d/finance/files/search/", {"q": "warranty"}, HTTP_ACCEPT_LANGUAGE=language)
        assert said in shown.content.decode()


def test_one_department_never_flushes_anothers_analyses(client, personas, document, settings, monkeypatch):
    """The token cache is shared fairly: finance's documents, more than the whole cache, keep
    within finance's share, so quality's rebuild after a new document reads only that document."""
    from assets.documents import selectors

    settings.DOCUMENT_SEARCH_DEPARTMENTS = 2
    settings.DOCUMENT_SEARCH_TOKEN_CACHE = 20  # 10 tokens a department
    words = "alpha bravo charlie delta echo foxtrot golf hotel"  # 8 tokens
    document([words[:23]], "q1.pdf", personas.department_b, personas.outsider)  # 4 tokens
    for number in range(3):
        document([words], f"f{number}.pdf")
    read = []
    real = selectors.document_text
    monkeypatch.setattr(selectors, "document_text", lambda asset: read.append(asset.original_name) or real(asset))

    client.force_login(personas.outsider)
    search_page(client, "quality", "nothingmatches")
    assert read == ["q1.pdf"]
    client.force_login(personas.member)
    search_page(client, "finance", "nothingmatches")  # 24 tokens: more than the whole cache
    assert sorted(read[1:]) == ["f0.pdf", "f1.pdf", "f2.pdf"]
    document(["india juliet"], "q2.pdf", personas.department_b, personas.outsider)
    del read[:]
    client.force_login(personas.outsider)
    results = search_page(client, "quality", "nothingmatches").context["results"]
    assert results.documents_searched == 2
    assert read == ["q2.pdf"]  # q1's analysis was still cached


def test_a_search_that_waited_for_a_rebuild_uses_it_instead_of_building_again(personas):
    """Searches of one department that find its index stale rebuild it once: the one that waited on
    the department's build lock finds the index the other built."""
    department = personas.department_b  # no documents

    class BuiltWhileWaiting:
        """The lock, as the first search leaves it: the index is there when the second gets in."""

        def __enter__(self):
            bounds = [
                ("DOCUMENT_SEARCH_MAX_PAGES", search.DEFAULT_MAX_PAGES),
                ("DOCUMENT_SEARCH_PAGE_CHARS", search.DEFAULT_PAGE_CHARS),
                ("DOCUMENT_SEARCH_MAX_TOKENS", search.DEFAULT_MAX_TOKENS),
            ]
            signature = (tuple(search._bound(name, default) for name, default in bounds),)  # no documents
            search._indexes[department.pk] = search._DepartmentIndex(
                signature=signature, refs=[], retriever=None, left_out=0
            )

        def __exit__(self, *_exc):
            return False

    search._build_locks[department.pk] = BuiltWhileWaiting()
    try:
        with department_scope(department):
            index, _assets = search._department_index(department)
    finally:
        del search._build_locks[department.pk]
    assert search.index_builds() == 0  # only the other search built it
    assert index is search._indexes[department.pk]
